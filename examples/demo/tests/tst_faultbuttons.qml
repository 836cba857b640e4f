import QtQuick
import QtTest
import Stage
import StageDemo

// Every fault button of Stage Demo's window: the action reaches the node, and the window (the
// SupervisorView's model, the mailbox cards, the event log) shows the result. One window, one
// tree, for the whole file, as a user would have it: each test measures what changed.
TestCase {
    id: test
    name: "FaultButtons"
    when: windowShown

    property var win: null
    property var view: null

    function node(name) { return DemoController.node(name) }
    function button(name) { return findChild(win.contentItem, name) }
    // A role of \a name's row in the SupervisorView's model.
    function shown(name, role) {
        const model = view.model
        return model.data(model.indexOf(node(name)), role)
    }
    function logHas(text) {
        const log = DemoController.eventLog
        for (let i = 0; i < log.rowCount(); ++i)
            if (log.data(log.index(i, 0), Qt.DisplayRole).indexOf(text) >= 0)
                return true
        return false
    }
    // Whether an entry added after the log's total was \a since contains \a text.
    function loggedSince(since, text) {
        const log = DemoController.eventLog
        const added = Math.min(log.total - since, log.rowCount())
        for (let i = 0; i < added; ++i)
            if (log.data(log.index(i, 0), Qt.DisplayRole).indexOf(text) >= 0)
                return true
        return false
    }
    function allRunning() {
        for (const name of DemoController.nodeNames)
            if (node(name).state !== Node.Running)
                return false
        return true
    }
    function aim(name) {
        mouseClick(button("target-" + name))
        compare(DemoController.target, name)
        tryCompare(view, "currentNode", node(name), 5000) // the view follows the target
    }

    function initTestCase() {
        const component = Qt.createComponent("qrc:/qt/qml/StageDemo/Main.qml")
        verify(component.status === Component.Ready, component.errorString())
        win = component.createObject(null)
        verify(win)
        view = findChild(win.contentItem, "supervisorView")
        verify(view)
        compare(DemoController.tree.objectName, "demo")
        compare(DemoController.nodeNames,
                ["demo", "files", "indexer", "hasher", "network", "fetcher", "requester", "devices", "poller",
                 "thumbnailer"])
        tryVerify(allRunning, 10000)
        waitForRendering(win.contentItem)
    }

    function cleanupTestCase() {
        // Exit while a worker hangs in a call a stop cannot interrupt: the shutdown reports it
        // abandoned, the window (and the tree) goes, and Setup::cleanupTestCase() waits for the
        // frame before the world goes.
        const indexer = node("indexer")
        const abandoned = indexer.statistics.abandoned
        const since = DemoController.eventLog.total
        verify(DemoController.injectHang("indexer"))
        tryVerify(() => loggedSince(since, "hung, and no watchdog"), 10000)
        DemoController.tree.shutdown()
        tryCompare(DemoController.tree, "state", Node.Stopped, 20000)
        compare(indexer.statistics.abandoned, abandoned + 1)
        win.destroy()
    }

    function init() {
        tryVerify(allRunning, 20000, "every node runs before a fault")
    }

    function test_throw_restartsTheWorker() {
        const fetcher = node("fetcher")
        const failed = fetcher.statistics.failed
        const shownFailed = shown("fetcher", SupervisionTreeModel.FailedRole)
        aim("fetcher")
        verify(button("throwButton").enabled)
        mouseClick(button("throwButton"))
        tryVerify(() => fetcher.statistics.failed > failed, 10000)
        tryVerify(() => logHas("injected fault: thrown while holding a request"), 5000)
        // The group absorbs it (maxRestarts 5): the worker restarts, the request is redelivered.
        tryVerify(() => shown("fetcher", SupervisionTreeModel.FailedRole) > shownFailed, 5000)
        tryCompare(fetcher, "state", Node.Running, 10000)
    }

    function test_hang_watchdogCatchesIt() {
        const poller = node("poller")
        const devices = node("devices")
        const failed = poller.statistics.failed
        const restarts = devices.restarts
        aim("poller")
        mouseClick(button("hangButton"))
        tryVerify(() => poller.statistics.failed > failed, 10000)
        tryVerify(() => logHas("missed its heartbeat deadline"), 5000)
        // The poller escalates at once; devices (one for all) restarts it.
        tryVerify(() => devices.restarts > restarts, 10000)
        tryVerify(() => shown("devices", SupervisionTreeModel.RestartsRole) > restarts, 5000)
        tryCompare(poller, "state", Node.Running, 10000)
    }

    function test_hang_shutdownTimeoutCatchesIt() {
        const indexer = node("indexer")
        const abandoned = indexer.statistics.abandoned
        aim("indexer")
        mouseClick(button("hangButton"))
        // No watchdog: the operator restarts it a second later; the stuck worker gets its
        // shutdownTimeout (1000 ms) to stop, then it is reported abandoned.
        tryVerify(() => indexer.statistics.abandoned > abandoned, 15000)
        tryVerify(() => logHas("abandoned: still stuck 1000 ms after its stop"), 5000)
        tryCompare(indexer, "state", Node.Running, 10000)
    }

    function test_poison_indexer_isDeadLettered() {
        const paths = DemoController.pathsMailbox
        const dead = paths.deadLettered
        aim("indexer")
        verify(button("poisonButton").enabled)
        mouseClick(button("poisonButton"))
        tryVerify(() => paths.deadLettered > dead, 20000)
        tryVerify(() => logHas("dead-lettered after 4 failed deliveries: corrupt file corrupt-"), 5000)
        const card = findChild(win.contentItem, "pathsCard")
        tryVerify(() => Number(findChild(card, "deadLetters").text) === paths.deadLetterCount, 5000)
        tryVerify(() => shown("indexer", SupervisionTreeModel.DeadLettersRole) === paths.deadLetterCount, 5000)
    }

    function test_poison_fetcher_isDeadLettered() {
        const requests = DemoController.requestsMailbox
        const dead = requests.deadLettered
        aim("fetcher")
        mouseClick(button("poisonButton"))
        tryVerify(() => requests.deadLettered > dead, 20000)
        tryVerify(() => logHas("dead-lettered after 4 failed deliveries: garbage from the server"), 5000)
        const card = findChild(win.contentItem, "requestsCard")
        tryVerify(() => Number(findChild(card, "deadLetters").text) === requests.deadLetterCount, 5000)
        tryVerify(() => shown("fetcher", SupervisionTreeModel.DeadLettersRole) === requests.deadLetterCount, 5000)
    }

    function test_poison_isRefusedWithoutAMailbox() {
        aim("poller")
        verify(!button("poisonButton").enabled)
        verify(!DemoController.injectPoison("poller"))
    }

    function test_segfault_thumbnailer_childCrashesAppCarriesOn() {
        const thumbnailer = node("thumbnailer")
        const images = DemoController.imagesMailbox
        const dead = images.deadLettered
        const failed = thumbnailer.failed   // stage::Group's own properties (no QML statistics gadget here)
        const processed = thumbnailer.processedMessages
        aim("thumbnailer")
        verify(button("segfaultButton").enabled)
        verify(!button("throwButton").enabled) // the fault flags live in this process, not in its children
        mouseClick(button("segfaultButton"))
        // The poisoned image kills a child 4 times (1 delivery + 3 redeliveries), then it is
        // dead-lettered with the child's exit reason; this process (the test) carries on.
        tryVerify(() => images.deadLettered > dead, 30000)
        verify(thumbnailer.failed >= failed + 4)
        tryVerify(() => logHas("dead-lettered after 4 failed deliveries: killed by signal 11"), 5000)
        tryVerify(() => logHas("failed: killed by signal 11"), 5000)
        tryCompare(thumbnailer, "state", Node.Running, 10000)
        // And it heals: new images are made into thumbnails by a new child.
        tryVerify(() => thumbnailer.processedMessages > processed + 2, 10000)
        tryVerify(() => shown("thumbnailer", SupervisionTreeModel.DeadLettersRole) === images.deadLetterCount, 5000)
        const card = findChild(win.contentItem, "imagesCard")
        tryVerify(() => Number(findChild(card, "deadLetters").text) === images.deadLetterCount, 5000)
    }

    function test_segfault_isRefusedElsewhere() {
        aim("indexer")
        verify(!button("segfaultButton").enabled)
        verify(!DemoController.injectSegfault("indexer"))
    }

    function test_storm_escalatesAndTheParentRecovers() {
        const devices = node("devices")
        const root = DemoController.tree
        const escalations = devices.statistics.escalations
        const rootRestarts = root.restarts
        aim("poller")
        mouseClick(button("stormButton"))
        // devices exceeds its intensity (3 restarts in 10 s), gives up, and the root restarts it.
        tryVerify(() => devices.statistics.escalations > escalations, 20000)
        tryVerify(() => root.restarts > rootRestarts, 10000)
        tryVerify(() => logHas("gave up: more than 3 restart(s) within 10000 ms"), 5000)
        tryCompare(devices, "state", Node.Running, 10000)
        tryVerify(() => logHas("recovered from the restart storm"), 5000)
        tryVerify(() => shown("devices", SupervisionTreeModel.StateTextRole) === "Running", 5000)
        tryVerify(() => shown("demo", SupervisionTreeModel.RestartsRole) > rootRestarts, 5000)
    }

    function test_stopAndStart_aSubtree() {
        const network = node("network")
        aim("network")
        verify(button("stopButton").enabled)
        verify(!button("startButton").enabled)
        mouseClick(button("stopButton"))
        tryCompare(network, "state", Node.Stopped, 10000)
        compare(node("fetcher").state, Node.Stopped)
        tryVerify(() => shown("network", SupervisionTreeModel.StateTextRole) === "Stopped", 5000)
        tryVerify(() => button("startButton").enabled, 5000)
        verify(!button("stopButton").enabled)
        mouseClick(button("startButton"))
        tryCompare(network, "state", Node.Running, 10000)
        tryVerify(() => shown("network", SupervisionTreeModel.StateTextRole) === "Running", 5000)
    }

    function test_zz_nothingLost() {
        // After every fault above: every message sent is acknowledged, dead-lettered or queued.
        tryVerify(() => DemoController.accounts.length === 3, 5000)
        tryCompare(DemoController, "lost", 0, 5000)
        tryVerify(() => findChild(win.contentItem, "lostBadge").children[0].text === "lost: 0", 5000)
    }

    function test_zzz_scenarioButton_playsEveryFault() {
        const restarts = DemoController.work.restarts
        const button = findChild(win.contentItem, "scenarioButton")
        verify(button.enabled)
        mouseClick(button)
        verify(DemoController.scenarioPlaying)
        verify(!button.enabled)
        tryVerify(() => DemoController.status.indexOf("scenario 1/11: throw fetcher") === 0, 5000)
        tryVerify(() => DemoController.status.indexOf("scenario 11/11: throw hasher") === 0, 40000)
        tryVerify(() => !DemoController.scenarioPlaying, 20000)
        tryVerify(allRunning, 20000)
        verify(DemoController.work.restarts > restarts)
        tryCompare(DemoController, "lost", 0, 5000)
    }
}
