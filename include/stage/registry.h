#pragma once

#include <stage/global.h>
#include <stage/worker.h>

#include <QtCore/QString>
#include <QtCore/QStringList>
#include <QtCore/QVariantMap>

#include <functional>
#include <type_traits>

namespace stage {

class MailboxBase;
template<typename T>
class Mailbox;

/*!
    A worker body registered by name: called once per worker run with the worker and the
    arguments of the group that runs it (a QML Group's \c arguments).
*/
using RegisteredWorker = std::function<QCoro::Task<>(Worker &, const QVariantMap &)>;

namespace detail {
STAGE_EXPORT bool registerWorkerImpl(const QString &name, RegisteredWorker body);

template<typename F>
RegisteredWorker toRegisteredWorker(F &&body)
{
    using Fn = std::decay_t<F>;
    if constexpr (std::is_invocable_r_v<QCoro::Task<>, Fn &, Worker &, const QVariantMap &>) {
        return RegisteredWorker(std::forward<F>(body));
    } else if constexpr (std::is_invocable_r_v<QCoro::Task<>, Fn &, Worker &>) {
        return [f = Fn(std::forward<F>(body))](Worker &worker, const QVariantMap &) mutable { return f(worker); };
    } else {
        static_assert(std::is_invocable_r_v<QCoro::Task<>, Fn &>,
                      "a registered worker takes (stage::Worker &, const QVariantMap &), (stage::Worker &) or "
                      "nothing, and returns QCoro::Task<>");
        return [f = Fn(std::forward<F>(body))](Worker &, const QVariantMap &) mutable { return f(); };
    }
}
} // namespace detail

/*!
    Registers the worker body \a body under \a name, for groups that name their worker instead of
    holding a factory (a QML `Group { worker: "indexer" }`, or registeredWorkerFactory()).
    \a body takes (stage::Worker &, const QVariantMap &arguments), (stage::Worker &) or nothing and
    returns QCoro::Task<>; like a Group factory, it is called once per worker run.

    Registering a name again replaces its body for the groups that resolve it afterwards; a group
    keeps the body it resolved (a copy) for its lifetime. Returns false, with a warning under
    stage.registry, for an empty name or an empty body.
    Thread: any (the registry is guarded by a mutex); a body runs on its worker's thread.
*/
template<typename F>
bool registerWorker(const QString &name, F &&body)
{
    return detail::registerWorkerImpl(name, detail::toRegisteredWorker(std::forward<F>(body)));
}

/*! Removes worker \a name; false if it was not registered. Groups that resolved it keep it. Thread: any. */
STAGE_EXPORT bool unregisterWorker(const QString &name);
/*! Whether a worker is registered under \a name. Thread: any. */
STAGE_EXPORT bool isWorkerRegistered(const QString &name);
/*! The registered worker names, sorted. Thread: any. */
STAGE_EXPORT QStringList registeredWorkers();
/*!
    A factory for Group::spawn() running the worker registered as \a name with \a arguments, or an
    empty factory if none is (Group::spawn() refuses an empty one with a warning). Thread: any.
*/
STAGE_EXPORT WorkerFactory registeredWorkerFactory(const QString &name, const QVariantMap &arguments = {});

/*!
    Makes the mailbox whose QObject side is \a mailbox known under \a name, for views (a QML
    \c MailboxView, a Group's \c mailbox). The registry holds it through a QPointer: a destroyed
    mailbox is unregistered by itself. Registering a name again replaces it. False, with a
    warning, for an empty name or a null mailbox. Thread: any.
*/
STAGE_EXPORT bool registerMailbox(const QString &name, MailboxBase *mailbox);
/*! Registers \a mailbox's QObject side (Mailbox::object()) under \a name. */
template<typename T>
bool registerMailbox(const QString &name, const Mailbox<T> &mailbox)
{
    return registerMailbox(name, mailbox.object());
}
/*! Removes mailbox \a name; false if it was not registered. Thread: any. */
STAGE_EXPORT bool unregisterMailbox(const QString &name);
/*! The mailbox registered as \a name, or nullptr. Thread: any; use the object from its own thread. */
STAGE_EXPORT MailboxBase *registeredMailbox(const QString &name);
/*! The registered mailbox names (of mailboxes still alive), sorted. Thread: any. */
STAGE_EXPORT QStringList registeredMailboxes();

} // namespace stage
