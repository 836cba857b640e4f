#pragma once

// The seed's second-degree service (snippet 2.1): Add(a, b, reply) requests wait in a
// stage::Mailbox, and the worker that serves them is restarted by a stage::Group.
//
// A request is a stage::Delivery while the worker holds it. If the worker throws, the delivery is
// destroyed by the unwinding and puts the request back at the front of the mailbox, reply and all:
// the restarted worker answers it, and the client never resends (degree 1 had to: its request died
// with the worker, see examples/first-degree).

#include <stage/stage.h>

#include <atomic>
#include <memory>
#include <stdexcept>

namespace adder2 {

struct Add
{
    int a;
    int b;
    stage::Reply<int> reply;
};

// Shared by every run of the worker: a restarted worker is a new frame with fresh locals.
struct Counters
{
    std::atomic<int> sent{0};      // requests the client sent
    std::atomic<int> taken{0};     // requests the workers took (a redelivered one counts again)
    std::atomic<int> served{0};    // replies sent
    std::atomic<int> failFirst{1}; // the first request taken makes the worker throw while holding it
};

// The worker: answers a + b, except that it throws while holding the first request it takes.
inline QCoro::Task<> worker(stage::Mailbox<Add> requests, std::shared_ptr<Counters> counters)
{
    for (;;) {
        auto request = co_await requests.receive(); // held until this iteration ends
        if (++counters->taken <= counters->failFirst)
            throw std::runtime_error("the adder tripped while holding a request"); // it goes back
        ++counters->served; // counted first: the client may resume on another thread at once
        request->reply.send(request->a + request->b);
    } // the request is acknowledged here
}

// The client: sends Add(a, b) once and waits for the answer.
inline QCoro::Task<int> add(stage::Mailbox<Add> requests, std::shared_ptr<Counters> counters, int a, int b)
{
    auto [reply, answer] = stage::makeReply<int>();
    ++counters->sent;
    co_await requests.send(Add{a, b, std::move(reply)});
    co_return co_await answer; // a BrokenReply only if the request itself were destroyed
}

} // namespace adder2
