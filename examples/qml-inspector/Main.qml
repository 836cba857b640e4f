import QtQuick
import QtQuick.Controls
import Stage

// A tree declared in QML: it starts once the whole declaration is complete; its workers are C++
// coroutines registered by name (main.cpp). SupervisorView shows it live.
ApplicationWindow {
    id: window
    width: 1180
    height: 660
    visible: true
    title: qsTr("Stage inspector")

    property alias app: app

    Supervisor {
        id: app
        objectName: "app"
        strategy: Supervisor.OneForOne
        maxRestarts: 20
        restartPeriod: 10000
        running: true

        Group { objectName: "sync"; worker: "flaky"; size: 2; arguments: ({ failEvery: 1500 }) }
        Supervisor {
            objectName: "devices"
            strategy: Supervisor.OneForAll
            maxRestarts: 5
            Group { objectName: "poller"; worker: "flaky"; heartbeatTimeout: 2000; arguments: ({ failEvery: 4000 }) }
            // It absorbs a few failures itself (its own intensity) before escalating to devices.
            Group { objectName: "uploader"; worker: "consumer"; mailbox: Stage.mailbox("jobs"); maxRestarts: 5 }
        }
        Group { objectName: "indexer"; worker: "steady"; size: 4; threadCount: 2 }
        Group { objectName: "reporter"; worker: "steady"; Supervisor.restartType: Stage.Transient }
    }

    // --stress N: a supervisor of N groups whose worker fails at once, restarting continuously.
    Component {
        id: crasher
        Group { worker: "crasher"; backoff: Stage.noBackoff() }
    }
    Component {
        id: stressSupervisor
        Supervisor { objectName: "stress"; maxRestarts: -1; backoff: Stage.noBackoff() }
    }
    function addStress(count) {
        const stress = stressSupervisor.createObject(app)
        for (let i = 0; i < count; ++i)
            crasher.createObject(stress, { objectName: "crasher-" + i })
    }

    SupervisorView {
        id: inspector
        objectName: "inspector"
        anchors.fill: parent
        root: app
    }
}
