import QtQuick
import QtTest
import Stage
import StageTest

// A read-only view of a mailbox C++ registered: depth, statistics, dead letters with reasons.
TestCase {
    id: test
    name: "MailboxView"

    MailboxView { id: byName; name: "inbox" }

    Component {
        id: consumers
        Supervisor {
            running: true
            Group { objectName: "consumer"; worker: "consumer"; mailbox: Stage.mailbox("inbox"); maxRestarts: -1
                    backoff: Stage.noBackoff() }
        }
    }

    function test_view_followsTheMailbox() {
        verify(byName.valid)
        compare(byName.capacity, -1)
        compare(byName.closed, false)
        compare(byName.maxRedeliveries, 1)
        const queuedBefore = byName.statistics.queued
        Probe.post(1)
        Probe.post(2)
        tryCompare(byName, "count", 2, 5000)
        compare(byName.statistics.queued, queuedBefore + 2)
        const root = createTemporaryObject(consumers, test)
        tryCompare(byName, "count", 0, 5000)
        tryVerify(() => Probe.events().indexOf("consumed 2") >= 0, 5000)
        compare(root.childNodes ? 1 : 1, 1)
        // Poison: its consumer fails twice (maxRedeliveries 1), then it is dead-lettered.
        Probe.post(13)
        tryCompare(byName, "deadLetterCount", 1, 5000)
        compare(byName.deadLetters.length, 1)
        verify(byName.deadLetters[0].indexOf("poison message 13") >= 0, byName.deadLetters[0])
        compare(byName.statistics.deadLettered, 1)
        compare(byName.mailbox, Stage.mailbox("inbox"))
    }

    MailboxView { id: none }

    function test_noMailbox_isInvalid() {
        compare(none.valid, false)
        compare(none.count, 0)
        compare(none.deadLetters.length, 0)
    }
}
