import QtQuick
import QtTest
import Stage
import StageTest

// Bad input from QML: a qmlWarning naming the file, the line and the reason; the node in Failed
// or nothing started; nothing crashes.
TestCase {
    id: test
    name: "BadInput"

    function init() { Probe.clear() }

    function warning(line, text) {
        // qmlWarning prefixes file:line:column.
        return new RegExp(".*tst_badinput\\.qml:" + line + ":\\d+: QML \\w+: " + text)
    }

    Component {
        id: unknownWorker
        Supervisor {
            running: true
            property alias g: g
            Group { id: g; worker: "no-such-worker" }
            Group { worker: "probe"; arguments: ({ name: "ok" }) }
        }
    }

    function test_unknownWorker_failsThatGroupOnly() {
        ignoreWarning(warning(24, "unknown worker \"no-such-worker\": no body is registered under that name with stage::registerWorker\\(\\) \\(registered: .*probe.*\\)"))
        const root = createTemporaryObject(unknownWorker, test)
        compare(root.g.state, Node.Failed)
        verify(root.g.stateReason.indexOf("unknown worker") === 0)
        tryCompare(root, "state", Node.Running, 5000)
        tryVerify(() => Probe.events().length === 1, 5000)
        compare(Probe.events(), ["start ok"])
        compare(root.g.state, Node.Failed)
        compare(root.restarts, 0)
    }

    Component {
        id: noWorker
        Group { running: true }
    }

    function test_groupWithoutWorker_fails() {
        ignoreWarning(warning(43, "Group has no worker: set worker to a name registered with stage::registerWorker\\(\\).*"))
        const g = createTemporaryObject(noWorker, test)
        compare(g.state, Node.Failed)
        compare(g.running, false)
    }

    Component {
        id: nested
        Supervisor {
            running: true
            property alias inner: inner
            Group {
                worker: "probe"; arguments: ({ name: "outer" })
                Group { id: inner; worker: "probe"; arguments: ({ name: "inner" }) }
            }
        }
    }

    function test_groupInsideGroup_isRefused() {
        ignoreWarning(warning(60, "a Group cannot be inside a Group \\(unnamed\\): only a Supervisor holds nodes"))
        const root = createTemporaryObject(nested, test)
        compare(root.inner.state, Node.Failed)
        compare(root.inner.supervisor, null)
        tryVerify(() => Probe.events().length === 1, 5000)
        compare(Probe.events(), ["start outer"])
        compare(root.childCount, 1)
    }

    Component {
        id: negative
        Group {
            worker: "probe"; arguments: ({ name: "neg" })
            size: -3
            threadCount: -1
            heartbeatTimeout: -5
        }
    }

    function test_negativeValues_areRefused() {
        ignoreWarning(warning(77, "size must be >= 0, got -3; ignored"))
        ignoreWarning(warning(77, "threadCount must be >= 0, got -1; ignored"))
        ignoreWarning(warning(77, "heartbeatTimeout must be >= 0 ms \\(0: no watchdog\\), got -5; ignored"))
        const g = createTemporaryObject(negative, test)
        compare(g.size, 1)
        compare(g.threadCount, 0)
        compare(g.heartbeatTimeout, 0)
        compare(g.state, Node.Idle)
    }

    Component {
        id: supervisedRunning
        Supervisor {
            property alias child: child
            Group { id: child; worker: "probe"; arguments: ({ name: "s" }); running: true }
        }
    }

    function test_runningOnASupervisedNode_isIgnored() {
        ignoreWarning(warning(100, "running: true is ignored on a supervised node: its supervisor  starts it"))
        const root = createTemporaryObject(supervisedRunning, test)
        wait(20)
        compare(root.child.state, Node.Idle) // its supervisor was not started
        compare(Probe.eventCount(), 0)
        verify(root.start())
        tryCompare(root.child, "state", Node.Running, 5000)
        ignoreWarning(new RegExp(".*running is decided by the supervisor  of this node; ignored.*"))
        root.child.running = false
        compare(root.child.state, Node.Running)
    }

    Component {
        id: cycle
        Supervisor {
            objectName: "top"
            running: true
            property alias inner: inner
            Supervisor { id: inner; objectName: "inner" }
        }
    }

    function test_cycle_isRefused() {
        const root = createTemporaryObject(cycle, test)
        tryCompare(root, "state", Node.Running, 5000)
        ignoreWarning("Supervisor::addChild: top is an ancestor of this supervisor (a cycle); ignored")
        ignoreWarning(/.*this node cannot join the Supervisor \(see the stage.supervisor warning\) \(in stage::qml::QmlSupervisor inner\); it is not started/)
        root.inner.nodes.push(root)
        compare(root.supervisor, null)
        compare(root.inner.childCount, 0)
        compare(root.state, Node.Running)
        // Also through createObject: a supervisor made under its own child joins that child.
        const extra = cycleChild.createObject(root.inner)
        tryCompare(extra, "state", Node.Running, 5000)
        compare(extra.supervisor, root.inner)
    }

    Component {
        id: cycleChild
        Supervisor { }
    }

    Component {
        id: plain
        Supervisor { }
    }

    function test_badBackoff_throwsAndKeepsTheValue() {
        const s = createTemporaryObject(plain, test)
        let error = ""
        try {
            s.backoff = Stage.exponentialBackoff(100, 10)
        } catch (e) {
            error = e.toString()
        }
        verify(error.indexOf("RangeError: Stage.exponentialBackoff(100, 10, 2, 0.2, 5000): needs 0 <= initialMs <= maximumMs") === 0, error)
        compare(s.backoff.initialMs, 10)
        compare(s.backoff.maximumMs, 5000)
        s.backoff = Stage.exponentialBackoff(20, 400)
        compare(s.backoff.initialMs, 20)
        compare(s.backoff.maximumMs, 400)
        s.backoff = Stage.noBackoff()
        compare(s.backoff.none, true)
    }

    function test_unknownMailbox_warns() {
        let error = ""
        try {
            Stage.mailbox("nope")
        } catch (e) {
            error = e.toString()
        }
        verify(error.indexOf("ReferenceError: Stage.mailbox(\"nope\"): no mailbox is registered under that name") === 0, error)
        verify(error.indexOf("inbox") > 0, error)
    }
}
