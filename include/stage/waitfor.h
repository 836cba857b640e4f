#pragma once

#include <stage/guard.h>

#include <QtCore/QEventLoop>
#include <QtCore/QTimer>

#include <chrono>
#include <memory>

namespace stage {
namespace detail {

[[noreturn]] STAGE_EXPORT void throwWaitForTimeout(std::chrono::milliseconds timeout);

template<typename R>
struct WaitForState
{
    using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, std::remove_cvref_t<R>>;
    QEventLoop *loop = nullptr; // null once waitFor() has returned
    bool done = false;
    std::optional<Stored> value;
    std::exception_ptr error;

    void finish()
    {
        done = true;
        if (loop)
            loop->quit();
    }
};

template<typename R, typename A>
QCoro::Task<> runWaitFor(std::shared_ptr<WaitForState<R>> state, A awaitable)
{
    try {
        if constexpr (std::is_void_v<R>) {
            co_await std::move(awaitable);
            state->value.emplace();
        } else {
            state->value.emplace(co_await std::move(awaitable));
        }
    } catch (...) {
        state->error = std::current_exception();
    }
    state->finish();
}

} // namespace detail

/*!
    Runs \a awaitable (a QCoro::Task, a Stage awaitable, any QCoro awaitable) to completion from
    synchronous code by spinning a nested QEventLoop, and returns its value.

    For tests and synchronous callers; never call it from inside a coroutine.
    Thread: the calling thread, which must be able to run an event loop.
    Errors: rethrows what \a awaitable throws (QCoro::waitFor() hangs instead); throws
    stage::TimeoutError if it has not finished within \a timeout (default 30 s). On a timeout the
    awaitable is left running in a frame of its own, and its late outcome is discarded.
*/
template<typename A>
auto waitFor(A &&awaitable, std::chrono::milliseconds timeout = std::chrono::seconds(30))
{
    using R = detail::GuardResult<std::remove_cvref_t<A>>;
    auto state = std::make_shared<detail::WaitForState<R>>();
    QEventLoop loop;
    state->loop = &loop;
    if constexpr (QCoro::detail::isTask_v<std::remove_cvref_t<A>>)
        detail::runWaitFor<R, std::remove_cvref_t<A>>(state, std::move(awaitable)); // a task is awaited once
    else
        detail::runWaitFor<R, std::remove_cvref_t<A>>(state, std::forward<A>(awaitable));
    if (!state->done) {
        QTimer failsafe;
        failsafe.setSingleShot(true);
        QObject::connect(&failsafe, &QTimer::timeout, &loop, &QEventLoop::quit);
        failsafe.start(timeout);
        loop.exec();
    }
    state->loop = nullptr;
    if (!state->done)
        detail::throwWaitForTimeout(timeout);
    if (state->error)
        std::rethrow_exception(state->error);
    if constexpr (!std::is_void_v<R>)
        return std::move(*state->value);
}

} // namespace stage
