#include <stage/group.h>
#include <stage/qfuture.h>
#include <stage/signal.h>
#include <stage/supervisor.h>

#include <QtCore/QLoggingCategory>

Q_LOGGING_CATEGORY(lcFuture, "stage.future", QtInfoMsg)

namespace stage {

namespace detail {

namespace {
thread_local int t_futureStarts = 0;

template<typename T>
QFuture<T> failedLater(const char *what)
{
    qCWarning(lcFuture, "%s", what);
    QPromise<T> promise;
    QFuture<T> future = promise.future();
    promise.start();
    FutureStart start;
    settleLater(std::move(promise), invalidOperation(what));
    return future;
}
} // namespace

FutureStart::FutureStart() noexcept : m_scope(nullptr)
{
    ++t_futureStarts;
}

FutureStart::~FutureStart()
{
    --t_futureStarts;
}

bool FutureStart::isInside() noexcept
{
    return t_futureStarts > 0;
}

std::exception_ptr invalidOperation(const char *what)
{
    return std::make_exception_ptr(InvalidOperation(what));
}

QCoro::Task<> awaitShutdown(Node *node, std::chrono::milliseconds timeout, QPromise<void> promise)
{
    // Both shutdowns return the node's "stopped" awaitable, made here (inside the FutureStart:
    // it belongs to no worker). A node deleted meanwhile settles it: it stopped on its way.
    if (auto *group = qobject_cast<Group *>(node))
        co_await group->shutdown(timeout);
    else if (auto *supervisor = qobject_cast<Supervisor *>(node))
        co_await supervisor->shutdown();
    if (FutureStart::isInside())
        co_await stage::sleep(std::chrono::milliseconds(0));
    promise.finish();
}

QCoro::Task<> awaitFinished(WorkerHandle *handle, QPromise<WorkerExit> promise)
{
    std::optional<WorkerExit> exit;
    std::exception_ptr error;
    try {
        if (handle->state() == WorkerHandle::State::Finished)
            exit.emplace(handle->lastExit());
        else // finished() comes from the event loop, never inside this call: connected in time
            exit.emplace(co_await stage::signal(handle, &WorkerHandle::finished));
    } catch (...) {
        error = std::current_exception(); // ObjectDestroyed: the handle went first
    }
    if (FutureStart::isInside())
        co_await stage::sleep(std::chrono::milliseconds(0));
    settle(promise, exit, error);
}

ContextLink::ContextLink(QObject *context) : m_context(context) {}

ContextLink::~ContextLink()
{
    unwatch(); // a future destroyed unfinished drops its continuation, and this link, uncalled
}

std::shared_ptr<ContextLink> ContextLink::make(QObject *context)
{
    if (!context) {
        qCWarning(lcFuture, "stage::then: the context is null; the continuation never runs (the future is cancelled)");
        return nullptr;
    }
    auto link = std::make_shared<ContextLink>(context);
    // Direct: destroyed() is emitted on the context's thread, inside its destruction.
    QMetaObject::Connection watch = QObject::connect(
        context, &QObject::destroyed, [weak = std::weak_ptr<ContextLink>(link)] {
            if (auto link = weak.lock())
                link->contextDestroyed();
        });
    std::lock_guard lock(link->m_mutex);
    if (link->m_context) // not run already (it cannot be yet)
        link->m_watch = watch;
    return link;
}

void ContextLink::contextDestroyed() noexcept
{
    std::lock_guard lock(m_mutex);
    m_context = nullptr;
}

void ContextLink::unwatch() noexcept
{
    QMetaObject::Connection watch;
    {
        std::lock_guard lock(m_mutex);
        watch = std::exchange(m_watch, {});
    }
    if (watch) // a context that lives on must not collect a connection per continuation
        QObject::disconnect(watch);
}

} // namespace detail

QFuture<void> shutdownFuture(Node *node, std::chrono::milliseconds timeout)
{
    if (!node)
        return detail::failedLater<void>("stage::shutdownFuture: the node is null");
    if (node->thread() != QThread::currentThread())
        return detail::failedLater<void>("stage::shutdownFuture: called from a thread other than the node's");
    if (!qobject_cast<Group *>(node) && !qobject_cast<Supervisor *>(node))
        return detail::failedLater<void>("stage::shutdownFuture: the node is neither a Group nor a Supervisor");
    QPromise<void> promise;
    QFuture<void> future = promise.future();
    promise.start();
    detail::FutureStart start;
    detail::awaitShutdown(node, timeout, std::move(promise));
    return future;
}

QFuture<WorkerExit> finishedFuture(WorkerHandle *handle)
{
    if (!handle)
        return detail::failedLater<WorkerExit>("stage::finishedFuture: the handle is null");
    if (handle->thread() != QThread::currentThread())
        return detail::failedLater<WorkerExit>("stage::finishedFuture: called from a thread other than the handle's");
    if (handle->state() == WorkerHandle::State::Idle)
        return detail::failedLater<WorkerExit>("stage::finishedFuture: the handle was never started");
    QPromise<WorkerExit> promise;
    QFuture<WorkerExit> future = promise.future();
    promise.start();
    detail::FutureStart start;
    detail::awaitFinished(handle, std::move(promise));
    return future;
}

} // namespace stage
