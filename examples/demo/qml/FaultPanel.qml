import QtQuick
import QtQuick.Layouts
import StageDemo

// Choose a node, then inject a fault into it through DemoController.
ColumnLayout {
    id: panel
    readonly property string target: DemoController.target
    readonly property var can: DemoController.can   // follows the node's state (stop/start)

    spacing: 8

    Flow {
        Layout.fillWidth: true
        spacing: 6
        Repeater {
            model: DemoController.nodeNames
            DemoButton {
                required property string modelData
                objectName: "target-" + modelData
                text: modelData
                minimumWidth: 50
                padding: 16
                implicitHeight: 26
                checked: DemoController.target === modelData
                onClicked: DemoController.target = modelData
            }
        }
    }
    GridLayout {
        Layout.fillWidth: true
        columns: 3
        columnSpacing: 6
        rowSpacing: 6
        DemoButton {
            objectName: "throwButton"; text: "Throw"; Layout.fillWidth: true
            enabled: panel.can.throw; onClicked: DemoController.injectThrow(panel.target)
        }
        DemoButton {
            objectName: "hangButton"; text: "Hang"; Layout.fillWidth: true
            enabled: panel.can.hang; onClicked: DemoController.injectHang(panel.target)
        }
        DemoButton {
            objectName: "poisonButton"; text: "Poison message"; Layout.fillWidth: true
            enabled: panel.can.poison; onClicked: DemoController.injectPoison(panel.target)
        }
        DemoButton {
            objectName: "segfaultButton"; text: "Segfault"; Layout.fillWidth: true
            enabled: panel.can.segfault; onClicked: DemoController.injectSegfault(panel.target)
        }
        DemoButton {
            objectName: "stormButton"; text: "Restart storm"; Layout.fillWidth: true
            enabled: panel.can.storm; onClicked: DemoController.startStorm(panel.target)
        }
        DemoButton {
            objectName: "stopButton"; text: "Stop"; Layout.fillWidth: true
            enabled: panel.can.stop; onClicked: DemoController.stopNode(panel.target)
        }
        DemoButton {
            objectName: "startButton"; text: "Start"; Layout.fillWidth: true
            enabled: panel.can.start; onClicked: DemoController.startNode(panel.target)
        }
    }
    DemoButton {
        objectName: "scenarioButton"
        Layout.fillWidth: true
        text: DemoController.scenarioPlaying ? "Scenario playing…" : "Not sure? Play the scripted scenario (20 s)"
        enabled: !DemoController.scenarioPlaying
        onClicked: DemoController.playScenario(20)
    }
    Text {
        Layout.fillWidth: true
        wrapMode: Text.WordWrap
        font.pixelSize: 11
        color: Theme.muted
        text: panel.can.watchdog ? "Hang: " + panel.target + " has a watchdog, which stops a worker that misses its heartbeat."
            : "Hang: no watchdog here; the operator restarts the node and its shutdown timeout reports the stuck worker abandoned."
    }
}
