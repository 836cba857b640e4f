#pragma once

#include <stage/detail/waiter.h>

#include <QtCore/QFuture>
#include <QtCore/QFutureWatcher>

namespace stage {
namespace detail {

[[noreturn]] STAGE_EXPORT void throwFutureCanceled();

template<typename T>
class FutureWaiter final : public Waiter
{
public:
    QFutureWatcher<T> *watcher = nullptr;

    ~FutureWaiter() override
    {
        if (watcher)
            watcher->deleteLater(); // only when the home thread ended before the resumption
    }

private:
    void disarm() noexcept override
    {
        delete watcher; // home thread, outside the watcher's own signal
        watcher = nullptr;
    }
};

template<typename T>
class FutureAwaitable : public AwaitableBase
{
public:
    explicit FutureAwaitable(QFuture<T> future) : m_future(std::move(future)) {}

    bool await_ready() const noexcept { return m_future.isFinished() || AwaitableBase::await_ready(); }

    void await_suspend(std::coroutine_handle<> handle)
    {
        markSuspended();
        m_waiter = makeWaiter<FutureWaiter<T>>();
        m_waiter->suspend(handle);
        // The watcher lives on this (the home) thread, so finished() is delivered here; it is
        // emitted for canceled futures too.
        auto *watcher = new QFutureWatcher<T>;
        m_waiter->watcher = watcher;
        QObject::connect(watcher, &QFutureWatcherBase::finished, watcher, [w = m_waiter.get()]() {
            if (w->claim())
                w->publish(Waiter::Outcome::Value);
        });
        watcher->setFuture(m_future);
    }

    T await_resume()
    {
        throwIfStoppedBeforeSuspending();
        if (m_waiter)
            m_waiter->rethrowIfFailed();
        m_future.waitForFinished(); // finished already; rethrows an exception stored in the future
        if constexpr (std::is_void_v<T>) {
            if (m_future.isCanceled())
                throwFutureCanceled();
        } else {
            if (m_future.resultCount() == 0)
                throwFutureCanceled();
            return m_future.result();
        }
    }

private:
    QFuture<T> m_future;
    WaiterRef<FutureWaiter<T>> m_waiter;
};

} // namespace detail

/*!
    Waits for \a future to finish and returns its result (the first result, for a future with
    several).

    Thread: the future may be fulfilled on any thread; the coroutine resumes on the thread that
    awaited. A future that is already finished does not suspend.
    Cancellation: a cancellation point; on stop the coroutine resumes with stage::Cancelled and
    the future is left running (cancel it yourself if it supports that).
    Errors: rethrows the exception stored in the future (Qt wraps a non-QException type in
    QUnhandledException); throws stage::Error if the future was canceled without a result.
*/
template<typename T>
detail::FutureAwaitable<T> future(QFuture<T> future)
{
    return detail::FutureAwaitable<T>(std::move(future));
}

} // namespace stage
