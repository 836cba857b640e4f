import QtQuick
import QtQuick.Controls
import QtTest
import Stage
import StageTest

// SupervisorView over a live tree: its rows, the filter, the selection and the detail pane, the
// actions, the keys.
TestCase {
    id: test
    name: "SupervisorView"
    when: windowShown
    visible: true
    width: 1000
    height: 600

    Component {
        id: scene
        Item {
            width: 1000
            height: 600
            property alias tree: root
            property alias view: view
            property alias a: a
            property alias sub: sub
            property alias c: c
            Supervisor {
                id: root
                objectName: "root"
                backoff: Stage.noBackoff()
                running: true
                Group { id: a; objectName: "alpha"; worker: "probe"; arguments: ({ name: "a" }) }
                Supervisor {
                    id: sub; objectName: "sub"
                    Group { id: c; objectName: "gamma"; worker: "probe"; arguments: ({ name: "c" }); size: 2 }
                }
            }
            SupervisorView {
                id: view
                anchors.fill: parent
                root: root
                flushInterval: 20
            }
        }
    }

    function init() { Probe.clear() }

    function treeOf(view) { return findChild(view, "tree") }

    function test_rows_filter_andSelection() {
        const s = createTemporaryObject(scene, test)
        tryCompare(s.tree, "state", Node.Running, 5000)
        const tree = treeOf(s.view)
        verify(tree)
        tryCompare(tree, "rows", 4, 5000) // root, alpha, sub, gamma: expanded
        s.view.filterText = "gam"
        tryCompare(tree, "rows", 3, 5000) // gamma and its ancestors
        s.view.filterText = ""
        tryCompare(tree, "rows", 4, 5000)
        verify(s.view.select(s.c))
        compare(s.view.currentNode, s.c)
        const detail = findChild(s.view, "detail")
        verify(detail)
        const history = findChild(s.view, "history")
        tryVerify(() => history.count >= 2, 5000)
    }

    function test_actions_reachTheNode() {
        const s = createTemporaryObject(scene, test)
        tryCompare(s.tree, "state", Node.Running, 5000)
        tryVerify(() => Probe.events().length === 3, 5000)
        Probe.clear()
        verify(s.view.select(s.a))
        waitForRendering(s.view)
        const stop = findChild(s.view, "stopButton")
        const start = findChild(s.view, "startButton")
        const restart = findChild(s.view, "restartButton")
        tryVerify(() => stop.visible, 5000)
        verify(stop.enabled)
        mouseClick(stop)
        tryCompare(s.a, "state", Node.Stopped, 5000)
        compare(Probe.events(), ["stop a"])
        tryCompare(start, "enabled", true, 5000)
        mouseClick(start)
        tryCompare(s.a, "state", Node.Running, 5000)
        mouseClick(restart)
        tryVerify(() => Probe.events().length === 4, 5000, Probe.events().join(", "))
        compare(Probe.events(), ["stop a", "start a", "stop a", "start a"])
        compare(s.tree.restarts, 0)
        // Resize a group.
        verify(s.view.select(s.c))
        waitForRendering(s.view)
        const sizeBox = findChild(s.view, "sizeBox")
        tryCompare(sizeBox, "value", 2, 5000)
        sizeBox.value = 3
        mouseClick(findChild(s.view, "resizeButton"))
        compare(s.c.size, 3)
        tryCompare(s.c.statistics, "running", 3, 5000)
    }

    function test_failure_showsInTheView() {
        const s = createTemporaryObject(scene, test)
        tryCompare(s.tree, "state", Node.Running, 5000)
        verify(s.view.select(s.tree))
        Probe.fail("a")
        tryCompare(s.tree, "restarts", 1, 5000)
        const failures = findChild(s.view, "failures")
        tryVerify(() => failures.count === 1, 5000)
        verify(failures.itemAt(0).text.indexOf("restarting after alpha failed") > 0, failures.itemAt(0).text)
    }

    function test_selectBeforeTheRowsExist_selectsWhenTheyAppear() {
        const s = createTemporaryObject(scene, test)
        const g = lateGroup.createObject(null, { objectName: "late", arguments: { name: "late" } })
        verify(!s.view.select(g)) // not in the tree yet
        s.sub.nodes.push(g)
        tryCompare(s.view, "currentNode", g, 5000)
        tryCompare(g, "state", Node.Running, 5000) // a node pushed after completion starts too
        s.view.showDetails = false
        compare(findChild(s.view, "detail").visible, false)
    }

    Component {
        id: lateGroup
        Group { worker: "probe" }
    }

    function test_keys_moveAndCollapse() {
        const s = createTemporaryObject(scene, test)
        tryCompare(s.tree, "state", Node.Running, 5000)
        const tree = treeOf(s.view)
        tryCompare(tree, "rows", 4, 5000)
        verify(s.view.select(s.tree))
        tree.forceActiveFocus()
        keyClick(Qt.Key_Down)
        tryCompare(s.view, "currentNode", s.a, 5000)
        keyClick(Qt.Key_Down)
        tryCompare(s.view, "currentNode", s.sub, 5000)
        keyClick(Qt.Key_Left) // collapse sub
        tryCompare(tree, "rows", 3, 5000)
        keyClick(Qt.Key_Right)
        tryCompare(tree, "rows", 4, 5000)
    }
}
