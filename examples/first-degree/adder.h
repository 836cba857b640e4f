#pragma once

// The seed's first-degree service: Add(a, b, reply) requests served by workers that fail on some.
//
// Until the mailbox (degree 2) exists, requests travel through a queue shared the way the seed's
// snippet 1.2 shares its receiver: shared ownership (std::shared_ptr), exclusive access (one
// thread; a worker takes one request at a time). The reply is a QPromise<int>: when a worker dies
// holding a request, the promise is destroyed unanswered, which cancels the client's QFuture, so
// the client knows at once that no answer will come (the seed's broken oneshot) and retries.

#include <stage/stage.h>

#include <QtCore/QObject>
#include <QtCore/QPromise>

#include <deque>
#include <memory>

namespace adder {

struct Add
{
    int a = 0;
    int b = 0;
    QPromise<int> reply;
};

class Queue : public QObject
{
    Q_OBJECT

public:
    void push(Add request)
    {
        m_items.push_back(std::move(request));
        emit pushed();
    }
    std::optional<Add> tryPop()
    {
        if (m_items.empty())
            return std::nullopt;
        Add front = std::move(m_items.front());
        m_items.pop_front();
        return front;
    }

Q_SIGNALS:
    void pushed();

private:
    std::deque<Add> m_items;
};

// Waits for a request; a cancellation point (stage::signal).
inline QCoro::Task<Add> receive(std::shared_ptr<Queue> queue)
{
    for (;;) {
        if (auto request = queue->tryPop())
            co_return std::move(*request);
        co_await stage::signal(queue.get(), &Queue::pushed);
    }
}

struct Counters
{
    int taken = 0;
    int served = 0;
    int failedOnPurpose = 0;
    int failFirst = 2; // the first two requests taken (by any worker) make it throw
};

// The worker: answers a + b, except that the first failFirst requests make it throw while it
// holds the request (and its reply). The counters are shared: a restarted worker is a new frame.
inline QCoro::Task<> worker(std::shared_ptr<Queue> queue, std::shared_ptr<Counters> counters)
{
    for (;;) {
        Add request = co_await receive(queue);
        if (++counters->taken <= counters->failFirst) {
            ++counters->failedOnPurpose;
            throw std::runtime_error("the adder tripped over a request");
        }
        request.reply.start();
        request.reply.addResult(request.a + request.b);
        request.reply.finish();
        ++counters->served;
    }
}

// The client: sends Add(a, b) until it gets an answer; returns the answer and the attempts made.
inline QCoro::Task<std::pair<int, int>> addWithRetry(std::shared_ptr<Queue> queue, int a, int b, int maxAttempts)
{
    for (int attempt = 1; attempt <= maxAttempts; ++attempt) {
        QPromise<int> promise;
        QFuture<int> answer = promise.future();
        queue->push(Add{a, b, std::move(promise)});
        try {
            co_return std::make_pair(co_await stage::future(answer), attempt);
        } catch (const stage::Error &) {
            // The worker died holding the request: the reply is broken; ask again.
        }
    }
    co_return std::make_pair(-1, maxAttempts);
}

} // namespace adder
