import QtQuick
import QtTest
import Stage
import StageTest

// An actor asked from QML: Stage.ask() is a Promise settled on the GUI thread with the reply or an
// Error named after the Stage exception; Stage.tell() returns the send status; bad input throws at
// the call and sends nothing. The actors are C++ (actorsetup.h): "adder" runs its handlers on a
// thread of its own, redelivers a failing message once, then dead-letters it.
TestCase {
    id: test
    name: "Actor"

    function init() { ActorProbe.clear() }

    // Asks and waits: {value, error, onGui} once the promise has settled.
    function settle(promise) {
        const out = { done: false, value: undefined, error: null, onGui: false }
        promise.then(v => { out.value = v; out.onGui = ActorProbe.onGuiThread(); out.done = true },
                     e => { out.error = e; out.onGui = ActorProbe.onGuiThread(); out.done = true })
        tryVerify(() => out.done, 10000)
        return out
    }

    function test_actors_listsTheRegisteredNames() {
        compare(Stage.actors(), ["adder", "plain"])
    }

    function test_ask_answersOnTheGuiThread() {
        const out = settle(Stage.ask("adder", "Add", {a: 1, b: 2}))
        compare(out.error, null)
        compare(out.value, 3)
        verify(out.onGui)
        compare(ActorProbe.events(), ["Add 1 2 on the actor's thread"])
    }

    function test_ask_repliesOfEveryKind() {
        const quotRem = settle(Stage.ask("adder", "Divide", {a: 17, b: 5}))
        compare(quotRem.error, null)
        compare(quotRem.value.quotient, 3)   // a Q_GADGET reply: an object of its properties
        compare(quotRem.value.remainder, 2)
        const label = settle(Stage.ask("adder", "Label", {text: "apples", scale: 2}))
        compare(label.value, "apples x2")
        const reset = settle(Stage.ask("adder", "Reset"))  // void: undefined, fields left out
        compare(reset.error, null)
        compare(reset.value, undefined)
        compare(ActorProbe.events(), ["Divide 17 5", "Label", "Reset"])
    }

    function test_tell_returnsTheStatusAndIsHandledInOrder() {
        settle(Stage.ask("adder", "Reset", {}))
        compare(Stage.tell("adder", "Add", {a: 5, b: 6}), "Sent")
        compare(Stage.tell("adder", "Add", {a: 1, b: 1}), "Sent")
        const total = settle(Stage.ask("adder", "Total"))
        compare(total.value, 13)
        compare(ActorProbe.events(), ["Reset", "Add 5 6 on the actor's thread", "Add 1 1 on the actor's thread", "Total"])
    }

    function test_ask_throwingHandler_rejectsWithDeadLettered() {
        const out = settle(Stage.ask("adder", "Divide", {a: 1, b: 0}))
        verify(out.error !== null)
        verify(out.onGui)
        compare(out.error.name, "DeadLettered")
        compare(out.error.message, "dead-lettered after 2 failed deliveries: division by zero")
        verify(out.error instanceof Error)
        compare(ActorProbe.events(), ["Divide 1 0", "Divide 1 0"]) // delivered, redelivered once, dead
        const after = settle(Stage.ask("adder", "Add", {a: 2, b: 2}))  // the next asks are served
        compare(after.value, 4)
    }

    function test_ask_timeout_rejectsWithTimeoutErrorNamingTheActor() {
        const out = settle(Stage.ask("adder", "Slow", {ms: 400}, 50))
        verify(out.error !== null)
        compare(out.error.name, "TimeoutError")
        compare(out.error.message, "stage::Actor: actor 'adder' did not answer actortest::Slow within 50 ms")
        compare(String(out.error), "TimeoutError: stage::Actor: actor 'adder' did not answer actortest::Slow within 50 ms")
        tryVerify(() => ActorProbe.events().indexOf("Slow 400 done") >= 0, 5000) // it ran on; its answer dropped
        compare(ActorProbe.events(), ["Slow 400", "Slow 400 done"])
    }

    function test_ask_engineDestroyedFirst_dropsTheAnswer() {
        verify(ActorProbe.askFromDoomedEngine(100))
        tryVerify(() => ActorProbe.events().indexOf("Slow 100 done") >= 0, 5000)
        // The answer came after its engine was gone: nothing ran (no "settled ..."), nothing leaked (ASan).
        const after = settle(Stage.ask("adder", "Total")) // a later ask is behind it: the answer has been sent
        verify(after.value !== undefined)
        wait(50)
        compare(ActorProbe.events(), ["Slow 100", "Slow 100 done", "Total"])
    }

    // Each call throws at once; nothing reaches the actor.
    function test_badInput_throwsAndSendsNothing_data() {
        return [
            { tag: "unknown actor", call: () => Stage.ask("nope", "Add", {a: 1, b: 2}),
              error: /^ReferenceError: Stage\.ask\("nope", "Add"\): no actor is registered under that name with stage::registerActor\(\) \(registered: adder, plain\)$/ },
            { tag: "unknown type", call: () => Stage.ask("adder", "Mul", {a: 1, b: 2}),
              error: /^TypeError: Stage\.ask\("adder", "Mul"\): actor "adder" has no message type "Mul" that QML can send \(its Q_GADGET messages: Add, Divide, Slow, Total, Reset, Label\)$/ },
            { tag: "C++-only message", call: () => Stage.ask("plain", "Hidden", {x: 1}),
              error: /^TypeError: Stage\.ask\("plain", "Hidden"\): actor "plain" has no message type "Hidden" that QML can send \(it has none: a message is sent from QML when it is a Q_GADGET\)$/ },
            { tag: "missing field", call: () => Stage.ask("adder", "Add", {a: 1}),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): Add needs the field "b" \(fields: a, b\)$/ },
            { tag: "no fields", call: () => Stage.ask("adder", "Add"),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): Add needs the field "a" \(fields: a, b\)$/ },
            { tag: "unknown field", call: () => Stage.ask("adder", "Add", {a: 1, b: 2, c: 3}),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): Add has no field "c" \(fields: a, b\)$/ },
            { tag: "field for a message without any", call: () => Stage.ask("adder", "Total", {all: true}),
              error: /^TypeError: Stage\.ask\("adder", "Total"\): Total has no field "all" \(it has none\)$/ },
            { tag: "string for int", call: () => Stage.ask("adder", "Add", {a: "1", b: 2}),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): Add\.a \(int\) cannot take a QString$/ },
            { tag: "fraction for int", call: () => Stage.ask("adder", "Add", {a: 1.5, b: 2}),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): Add\.a \(int\) cannot take 1\.5 \(not an integer\)$/ },
            { tag: "out of range", call: () => Stage.ask("adder", "Add", {a: 1, b: 4294967296}),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): Add\.b \(int\) cannot take 4\.?29\S* \(out of range\)$/ },
            { tag: "null", call: () => Stage.ask("adder", "Add", {a: null, b: 2}),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): Add\.a \(int\) cannot take a std::nullptr_t$/ },
            { tag: "number for string", call: () => Stage.ask("adder", "Label", {text: 5, scale: 1}),
              error: /^TypeError: Stage\.ask\("adder", "Label"\): Label\.text \(QString\) cannot take a (int|double)$/ },
            { tag: "fields not an object", call: () => Stage.ask("adder", "Add", 5),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): the fields must be an object \(\{name: value, \.\.\.\}\), got 5$/ },
            { tag: "fields an array", call: () => Stage.ask("adder", "Add", [1, 2]),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): the fields must be an object/ },
            { tag: "zero timeout", call: () => Stage.ask("adder", "Add", {a: 1, b: 2}, 0),
              error: /^RangeError: Stage\.ask\("adder", "Add"\): timeoutMs must be >= 1 \(or left out for the actor's askTimeout\), got 0$/ },
            { tag: "negative timeout", call: () => Stage.ask("adder", "Add", {a: 1, b: 2}, -5),
              error: /^RangeError: .*timeoutMs must be >= 1.*got -5$/ },
            { tag: "timeout not a number", call: () => Stage.ask("adder", "Add", {a: 1, b: 2}, "soon"),
              error: /^TypeError: Stage\.ask\("adder", "Add"\): timeoutMs must be a number of milliseconds \(or left out for the actor's askTimeout\), got soon$/ },
            { tag: "tell unknown actor", call: () => Stage.tell("nope", "Add", {a: 1, b: 2}),
              error: /^ReferenceError: Stage\.tell\("nope", "Add"\): no actor is registered/ },
            { tag: "tell bad field", call: () => Stage.tell("adder", "Add", {a: 1, b: "2"}),
              error: /^TypeError: Stage\.tell\("adder", "Add"\): Add\.b \(int\) cannot take a QString$/ },
        ]
    }

    function test_badInput_throwsAndSendsNothing(data) {
        let error = ""
        let returned
        try {
            returned = data.call()
        } catch (e) {
            error = e.toString()
        }
        verify(data.error.test(error), error)
        compare(returned, undefined)
        // A good ask after it: the actor has seen only that one.
        const total = settle(Stage.ask("adder", "Total"))
        compare(total.error, null)
        compare(ActorProbe.events(), ["Total"])
    }
}
