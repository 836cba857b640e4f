import QtQuick
import QtTest
import Stage
import StageTest

// A tree declared in QML: started once complete, in order; restarts update the bindings;
// escalation; late nodes; the invokables.
TestCase {
    id: test
    name: "Tree"

    Component {
        id: declared
        Supervisor {
            objectName: "root"
            strategy: Supervisor.OneForAll
            maxRestarts: 5; restartPeriod: 10000
            backoff: Stage.noBackoff()
            running: true
            property alias a: a
            property alias sub: sub
            Group { id: a; objectName: "a"; worker: "probe"; arguments: ({ name: "a" }) }
            Group { objectName: "b"; worker: "probe"; arguments: ({ name: "b" }) }
            Supervisor {
                id: sub; objectName: "sub"
                Group { objectName: "c"; worker: "probe"; arguments: ({ name: "c" }); threadCount: 1 }
            }
        }
    }

    function init() { Probe.clear() }

    function test_declaredTree_startsInOrderOnceComplete() {
        const root = createTemporaryObject(declared, test)
        verify(root)
        tryCompare(root, "state", Node.Running, 5000)
        compare(Probe.events(), ["start a", "start b", "start c"])
        compare(root.childCount, 3)
        compare(root.a.supervisor, root)
        compare(root.sub.childCount, 1)
        compare(root.stateText, "Running")
        verify(root.history.length >= 2)
        compare(root.history[root.history.length - 1].stateText, "Running")
    }

    function test_failure_restartsPerStrategy_andBindingsUpdate() {
        const root = createTemporaryObject(declared, test)
        tryCompare(root, "state", Node.Running, 5000)
        Probe.clear()
        Probe.fail("a")
        tryCompare(root, "restarts", 1, 5000)
        tryCompare(root, "state", Node.Running, 5000)
        // One for all: a ended (threw), the others stopped in reverse order, all started in order.
        tryVerify(() => Probe.events().length === 6, 5000, Probe.events().join(", "))
        compare(Probe.events(), ["stop a", "stop c", "stop b", "start a", "start b", "start c"])
        compare(root.statistics.restarts, 1)
        compare(root.statistics.childFailures, 1)
        compare(root.recentRestarts, 1)
        compare(root.a.statistics.started, 2) // the group's counters span its runs
        compare(root.a.statistics.failed, 1)
        compare(root.a.failed, 1)
    }

    Component {
        id: escalating
        Supervisor {
            objectName: "top"
            maxRestarts: 0
            running: true
            property alias inner: inner
            Supervisor {
                id: inner; objectName: "inner"
                maxRestarts: 0
                Group { objectName: "x"; worker: "probe"; arguments: ({ name: "x" }) }
            }
        }
    }

    SignalSpy { id: gaveUpSpy; signalName: "gaveUp" }

    function test_escalation_reachesTheRootsGaveUp() {
        const root = createTemporaryObject(escalating, test)
        gaveUpSpy.target = root
        gaveUpSpy.clear()
        tryCompare(root, "state", Node.Running, 5000)
        Probe.fail("x")
        gaveUpSpy.wait(5000)
        compare(gaveUpSpy.count, 1)
        compare(root.state, Node.Failed)
        compare(root.inner.state, Node.Failed)
        verify(root.stateReason.indexOf("x was told to fail") >= 0, root.stateReason)
        compare(root.running, false)
        // A root starts again.
        Probe.clear()
        verify(root.start())
        tryCompare(root, "state", Node.Running, 5000)
        compare(Probe.events(), ["start x"])
    }

    Component {
        id: withLoader
        Supervisor {
            id: loaderRoot
            objectName: "root"
            running: true
            property bool loadLate: false
            property alias loader: loader
            Group { objectName: "first"; worker: "probe"; arguments: ({ name: "first" }) }
            Loader {
                id: loader
                active: loaderRoot.loadLate
                sourceComponent: Component {
                    Group { objectName: "late"; worker: "probe"; arguments: ({ name: "late" }) }
                }
            }
        }
    }

    function test_lateNodeFromALoader_startsAndStops() {
        const root = createTemporaryObject(withLoader, test)
        tryCompare(root, "state", Node.Running, 5000)
        compare(root.childCount, 1)
        root.loadLate = true
        tryCompare(root, "childCount", 2, 5000)
        tryVerify(() => Probe.events().indexOf("start late") >= 0, 5000, Probe.events().join(", "))
        compare(root.loader.item.supervisor, root)
        compare(root.loader.item.state, Node.Running)
        root.loadLate = false
        const late = root.loader.item
        tryVerify(() => Probe.events().indexOf("stop late") >= 0, 5000, Probe.events().join(", "))
        tryCompare(root, "childCount", 1, 5000)
        compare(root.state, Node.Running)
        compare(Probe.events(), ["start first", "start late", "stop late"])
    }

    Component {
        id: withInstantiator
        Supervisor {
            id: instRoot
            running: true
            property int count: 3
            Instantiator {
                model: instRoot.count
                delegate: Group {
                    required property int index
                    objectName: "inst" + index
                    worker: "probe"
                    arguments: ({ name: "inst" + index })
                }
            }
        }
    }

    function test_instantiator_nodesJoinAndLeave() {
        const root = createTemporaryObject(withInstantiator, test)
        tryCompare(root, "state", Node.Running, 5000)
        tryCompare(root, "childCount", 3, 5000)
        tryVerify(() => Probe.events().length === 3, 5000, Probe.events().join(", "))
        compare(Probe.events().slice().sort(), ["start inst0", "start inst1", "start inst2"])
        // A new int model makes the Instantiator destroy its objects and create them again.
        root.count = 1
        tryCompare(root, "childCount", 1, 5000)
        tryVerify(() => Probe.events().length === 7, 5000, Probe.events().join(", "))
        compare(Probe.events().slice(3).sort(), ["start inst0", "stop inst0", "stop inst1", "stop inst2"])
        tryCompare(root.childNodes()[0], "state", Node.Running, 5000)
        compare(root.state, Node.Running)
    }

    Component {
        id: lateGroup
        Group { worker: "probe" }
    }

    function test_createObject_joinsTheRunningTree_andDestroyStopsIt() {
        const root = createTemporaryObject(declared, test)
        tryCompare(root, "state", Node.Running, 5000)
        Probe.clear()
        const g = lateGroup.createObject(root.sub, { objectName: "d", arguments: { name: "d" } })
        verify(g)
        compare(g.supervisor, root.sub)
        tryCompare(g, "state", Node.Running, 5000)
        compare(root.sub.childCount, 2)
        compare(Probe.events(), ["start d"])
        // Deleting a running subtree stops it (bounded) and removes it.
        root.sub.destroy()
        tryCompare(root, "childCount", 2, 5000)
        tryVerify(() => Probe.events().length === 3, 5000, Probe.events().join(", "))
        compare(Probe.events(), ["start d", "stop d", "stop c"])
        compare(root.state, Node.Running)
    }

    Component {
        id: stubbornTree
        Supervisor {
            running: true
            property alias sub: sub
            Supervisor {
                id: sub
                Group { worker: "stubborn"; shutdownTimeout: 300 }
                Group { worker: "probe"; arguments: ({ name: "polite" }) }
            }
        }
    }

    function test_destroyingASubtree_isBoundedByShutdownTimeouts() {
        const root = createTemporaryObject(stubbornTree, test)
        tryCompare(root, "state", Node.Running, 5000)
        tryVerify(() => Probe.events().length === 2, 5000, Probe.events().join(", "))
        ignoreWarning(/.*abandon.*/)
        const started = Date.now()
        root.sub.destroy()
        tryCompare(root, "childCount", 0, 5000)
        const elapsed = Date.now() - started
        // polite stops at once; stubborn is abandoned after its 300 ms.
        verify(elapsed >= 250 && elapsed < 2500, "destroying took " + elapsed + " ms")
        compare(Probe.events(), ["start stubborn", "start polite", "stop polite"])
        compare(root.state, Node.Running)
        // The abandoned body still ends by itself (and its frame is freed).
        tryVerify(() => Probe.events().length === 4, 5000, Probe.events().join(", "))
        compare(Probe.events()[3], "stubborn ended")
    }

    Component {
        id: temporaryChild
        Supervisor {
            running: true
            backoff: Stage.noBackoff()
            property alias t: t
            property alias p: p
            Group { id: t; worker: "probe"; arguments: ({ name: "t" }); Supervisor.restartType: Stage.Temporary }
            Group { id: p; worker: "probe"; arguments: ({ name: "p" }) }
        }
    }

    function test_attachedRestartType_isTheChildsRestartType() {
        const root = createTemporaryObject(temporaryChild, test)
        tryCompare(root, "state", Node.Running, 5000)
        compare(root.t.Supervisor.restartType, Stage.Temporary)
        compare(root.p.Supervisor.restartType, Stage.Permanent)
        compare(root.t.Supervisor.supervisor, root)
        Probe.clear()
        Probe.fail("t")
        tryCompare(root.t, "state", Node.Failed, 5000)
        wait(50)
        compare(root.t.state, Node.Failed) // temporary: not restarted
        compare(root.restarts, 0)
        Probe.fail("p")
        tryCompare(root, "restarts", 1, 5000)
        tryCompare(root.p, "state", Node.Running, 5000)
    }

    function test_invokables_stopStartRestart() {
        const root = createTemporaryObject(temporaryChild, test)
        tryCompare(root, "state", Node.Running, 5000)
        Probe.clear()
        verify(root.p.stop())
        tryCompare(root.p, "state", Node.Stopped, 5000)
        compare(Probe.events(), ["stop p"])
        compare(root.restarts, 0)
        verify(root.p.start())
        tryCompare(root.p, "state", Node.Running, 5000)
        verify(root.p.restart())
        tryVerify(() => Probe.events().length === 4, 5000, Probe.events().join(", "))
        compare(Probe.events(), ["stop p", "start p", "stop p", "start p"])
        tryCompare(root.p, "state", Node.Running, 5000)
        compare(root.restarts, 0) // an operator's restarts are not failures
        // The root: running false shuts it down, true starts it again; restart() does both.
        root.running = false
        tryCompare(root, "state", Node.Stopped, 5000)
        compare(root.p.state, Node.Stopped)
        root.running = true
        tryCompare(root, "state", Node.Running, 5000)
        Probe.clear()
        verify(root.restart())
        tryVerify(() => Probe.events().length === 4, 5000, Probe.events().join(", "))
        compare(Probe.events(), ["stop p", "stop t", "start t", "start p"])
        tryCompare(root, "state", Node.Running, 5000)
    }

    Component {
        id: standaloneGroup
        Group { worker: "probe"; arguments: ({ name: "solo" }); size: 2 }
    }

    function test_rootGroup_runsOnlyWhenAsked() {
        const g = createTemporaryObject(standaloneGroup, test)
        wait(20)
        compare(g.state, Node.Idle)
        compare(Probe.eventCount(), 0)
        g.running = true
        tryCompare(g, "running", true, 5000)
        tryCompare(g.statistics, "running", 2, 5000)
        tryVerify(() => Probe.eventCount() === 2, 5000)
        g.size = 1
        tryVerify(() => Probe.eventCount() === 3, 5000)
        g.shutdown()
        tryCompare(g, "state", Node.Stopped, 5000)
        compare(Probe.events(), ["start solo", "start solo", "stop solo", "stop solo"])
    }
}
