import QtQuick
import QtQuick.Controls
import QtTest
import Stage
import StageTest

// The README's QML section, as written: the declaration starts in order and the view shows it.
TestCase {
    id: test
    name: "Readme"
    when: windowShown
    visible: true
    width: 900
    height: 500

    Component {
        id: readme
        Item {
            width: 900
            height: 500
            property alias tree: tree
            property alias view: view
            // --- from README.md, "QML (import Stage)" ---
            Supervisor {
                id: tree
                strategy: Supervisor.OneForOne; maxRestarts: 5; restartPeriod: 10000
                running: true
                Group { objectName: "indexer"; worker: "indexer"; size: 2; threadCount: 2 }
                Supervisor { strategy: Supervisor.OneForAll
                    Group { worker: "poller"; heartbeatTimeout: 2000 }
                    Group { worker: "uploader"; arguments: ({ url: "local://outbox" }); mailbox: Stage.mailbox("outbox")
                            Supervisor.restartType: Stage.Transient }
                }
            }
            SupervisorView { id: view; anchors.fill: parent; root: tree }
            // ---
        }
    }

    function test_readmeDeclaration_runs() {
        Probe.clear()
        const s = createTemporaryObject(readme, test)
        tryCompare(s.tree, "state", Node.Running, 5000)
        tryVerify(() => Probe.events().length === 4, 5000, Probe.events().join(", "))
        // The indexer's two workers (on its threads) in any order, then the subtree in order.
        compare(Probe.events().slice(0, 2), ["readme indexer", "readme indexer"])
        compare(Probe.events().slice(2), ["readme poller", "readme uploader"])
        tryCompare(findChild(s.view, "tree"), "rows", 5, 5000)
    }
}
