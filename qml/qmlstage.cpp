#include "qmlstage.h"
#include "qmlnodesupport.h"

#include <stage/errors.h>
#include <stage/qfuture.h>
#include <stage/registry.h>

#include <QtQml/QQmlEngine>
#include <QtQml/QQmlInfo>

#include <climits>
#include <cmath>

namespace stage::qml {

QmlStage::QmlStage(QObject *parent) : QObject(parent) {}

void QmlStage::throwError(QJSValue::ErrorType type, const QString &message) const
{
    if (QJSEngine *engine = qjsEngine(this))
        engine->throwError(type, message);
    else
        qmlWarning(this) << message;
}

QStringList QmlStage::workers() const
{
    return registeredWorkers();
}

QStringList QmlStage::mailboxes() const
{
    return registeredMailboxes();
}

MailboxBase *QmlStage::mailbox(const QString &name) const
{
    MailboxBase *box = registeredMailbox(name);
    if (!box) {
        // Thrown into the calling binding or function: the engine reports it with its file and line.
        throwError(QJSValue::ReferenceError,
                   QStringLiteral("Stage.mailbox(\"%1\"): no mailbox is registered under that name with "
                                  "stage::registerMailbox() (registered: %2)")
                       .arg(name, registeredMailboxes().join(QStringLiteral(", "))));
        return nullptr;
    }
    QQmlEngine::setObjectOwnership(box, QQmlEngine::CppOwnership);
    return box;
}

Backoff QmlStage::noBackoff() const
{
    return Backoff::none();
}

Backoff QmlStage::exponentialBackoff(int initialMs, int maximumMs, double multiplier, double jitter,
                                     int resetAfterMs) const
{
    if (initialMs < 0 || maximumMs < initialMs || multiplier < 1.0 || jitter < 0.0 || jitter > 1.0 || resetAfterMs < 0) {
        throwError(QJSValue::RangeError,
                   QStringLiteral("Stage.exponentialBackoff(%1, %2, %3, %4, %5): needs 0 <= initialMs <= maximumMs, "
                                  "multiplier >= 1, 0 <= jitter <= 1, resetAfterMs >= 0")
                       .arg(initialMs)
                       .arg(maximumMs)
                       .arg(multiplier)
                       .arg(jitter)
                       .arg(resetAfterMs));
        return Backoff();
    }
    return Backoff::exponential(std::chrono::milliseconds(initialMs), std::chrono::milliseconds(maximumMs), multiplier,
                                jitter, std::chrono::milliseconds(resetAfterMs));
}

QStringList QmlStage::actors() const
{
    return registeredActors();
}

bool QmlStage::resolveMessage(const char *function, const QString &actor, const QString &type,
                              const QJSValue &fields, ResolvedMessage *out) const
{
    const QString call = QStringLiteral("Stage.%1(\"%2\", \"%3\")").arg(QLatin1String(function), actor, type);
    out->actor = detail::registeredActorImpl(actor);
    if (!out->actor.ref) {
        throwError(QJSValue::ReferenceError,
                   call + QStringLiteral(": no actor is registered under that name with stage::registerActor() "
                                         "(registered: %1)")
                              .arg(registeredActors().join(QStringLiteral(", "))));
        return false;
    }
    QStringList types;
    if (out->actor.messages) {
        for (const detail::ActorVariantMessage &message : *out->actor.messages) {
            types.append(message.type);
            if (message.type == type)
                out->message = &message;
        }
    }
    if (!out->message) {
        throwError(QJSValue::TypeError,
                   call + QStringLiteral(": actor \"%1\" has no message type \"%2\" that QML can send (%3)")
                              .arg(actor, type,
                                   types.isEmpty() ? QStringLiteral("it has none: a message is sent from QML when it "
                                                                    "is a Q_GADGET")
                                                   : QStringLiteral("its Q_GADGET messages: ")
                                                         + types.join(QStringLiteral(", "))));
        return false;
    }
    if (fields.isUndefined())
        return true; // no fields: right for a message without properties
    if (!fields.isObject() || fields.isArray() || fields.isCallable() || fields.isQObject()) {
        throwError(QJSValue::TypeError, call + QStringLiteral(": the fields must be an object ({name: value, ...}), got ")
                                             + fields.toString());
        return false;
    }
    out->fields = fields.toVariant().toMap();
    return true;
}

QJSValue QmlStage::ask(const QString &actor, const QString &type, const QJSValue &fields, const QJSValue &timeoutMs)
{
    QJSEngine *engine = qjsEngine(this);
    if (!engine) {
        qmlWarning(this) << "Stage.ask(): not called from a QML engine";
        return QJSValue();
    }
    ResolvedMessage resolved;
    if (!resolveMessage("ask", actor, type, fields, &resolved))
        return QJSValue();
    const QString call = QStringLiteral("Stage.ask(\"%1\", \"%2\")").arg(actor, type);
    std::chrono::milliseconds timeout(-1); // the actor's askTimeout()
    if (!timeoutMs.isUndefined()) {
        if (!timeoutMs.isNumber()) {
            throwError(QJSValue::TypeError, call + QStringLiteral(": timeoutMs must be a number of milliseconds "
                                                                  "(or left out for the actor's askTimeout), got ")
                                                 + timeoutMs.toString());
            return QJSValue();
        }
        const double ms = timeoutMs.toNumber();
        if (!(ms >= 1 && ms <= double(INT_MAX))) {
            throwError(QJSValue::RangeError, call + QStringLiteral(": timeoutMs must be >= 1 (or left out for the "
                                                                   "actor's askTimeout), got ")
                                                  + timeoutMs.toString());
            return QJSValue();
        }
        timeout = std::chrono::milliseconds(qint64(std::ceil(ms)));
    }
    QFuture<QVariant> answer;
    QString error;
    if (!resolved.message->ask(resolved.fields, timeout, &answer, &error)) {
        throwError(QJSValue::TypeError, call + QStringLiteral(": ") + error);
        return QJSValue();
    }
    if (m_deferred.isUndefined()) {
        // The executor runs at once: resolve and reject are kept, to settle from C++. The Error's
        // name is defined, not assigned: Qt 6.4's engine silently ignores `error.name = ...` (and
        // setProperty("name") on a QJSEngine::newErrorObject()).
        m_deferred = engine->evaluate(QStringLiteral(
            "(function () { const d = {}; d.promise = new Promise((resolve, reject) => { d.resolve = resolve; "
            "d.reject = (name, message) => { const e = new Error(message); Object.defineProperty(e, 'name', "
            "{value: name, writable: true, configurable: true}); reject(e); }; }); return d; })"));
    }
    const QJSValue deferred = m_deferred.call();
    const quint64 id = ++m_nextAsk;
    m_pending.emplace(id, PendingAsk{deferred.property(QStringLiteral("resolve")),
                                     deferred.property(QStringLiteral("reject"))});
    // On this singleton's (the engine's) thread; never if it is destroyed first (with its engine):
    // the pending entry goes with it.
    stage::then(answer, this, [this, id](const QFuture<QVariant> &done) { settle(id, done); });
    return deferred.property(QStringLiteral("promise"));
}

namespace {

/* The Stage exception's class name, for the rejection's Error.name. */
QString errorName(const std::exception_ptr &error)
{
    try {
        std::rethrow_exception(error);
    } catch (const DeadLettered &) {
        return QStringLiteral("DeadLettered");
    } catch (const BrokenReply &) {
        return QStringLiteral("BrokenReply");
    } catch (const TimeoutError &) {
        return QStringLiteral("TimeoutError");
    } catch (const MailboxClosed &) {
        return QStringLiteral("MailboxClosed");
    } catch (const InvalidOperation &) {
        return QStringLiteral("InvalidOperation");
    } catch (const ObjectDestroyed &) {
        return QStringLiteral("ObjectDestroyed");
    } catch (...) {
    }
    return QStringLiteral("Error");
}

QString errorText(const std::exception_ptr &error)
{
    try {
        std::rethrow_exception(error);
    } catch (const std::exception &e) {
        return QString::fromUtf8(e.what());
    } catch (...) {
    }
    return QStringLiteral("unknown exception");
}

} // namespace

void QmlStage::settle(quint64 id, const QFuture<QVariant> &answer)
{
    auto it = m_pending.find(id);
    if (it == m_pending.end())
        return;
    const PendingAsk pending = std::move(it->second);
    m_pending.erase(it);
    QJSEngine *engine = qjsEngine(this);
    if (!engine)
        return;
    if (const std::exception_ptr error = detail::errorOf(answer)) {
        pending.reject.call({errorName(error), errorText(error)});
    } else {
        pending.resolve.call({engine->toScriptValue(answer.result())});
    }
}

QString QmlStage::tell(const QString &actor, const QString &type, const QJSValue &fields)
{
    ResolvedMessage resolved;
    if (!resolveMessage("tell", actor, type, fields, &resolved))
        return QString();
    SendStatus status = SendStatus::Closed;
    QString error;
    if (!resolved.message->tell(resolved.fields, &status, &error)) {
        throwError(QJSValue::TypeError, QStringLiteral("Stage.tell(\"%1\", \"%2\"): ").arg(actor, type) + error);
        return QString();
    }
    switch (status) {
    case SendStatus::Sent:
        return QStringLiteral("Sent");
    case SendStatus::Full:
        return QStringLiteral("Full");
    case SendStatus::Closed:
        break;
    }
    return QStringLiteral("Closed");
}

bool QmlStage::start(Node *node) const
{
    if (!node) {
        qmlWarning(this) << "Stage.start(): the node is null";
        return false;
    }
    // The most derived start() (a QML Group first resolves its worker).
    bool ok = false;
    QMetaObject::invokeMethod(node, "start", Qt::DirectConnection, Q_RETURN_ARG(bool, ok));
    return ok;
}

bool QmlStage::stop(Node *node) const
{
    if (!node) {
        qmlWarning(this) << "Stage.stop(): the node is null";
        return false;
    }
    return node->stop();
}

bool QmlStage::restart(Node *node) const
{
    if (!node) {
        qmlWarning(this) << "Stage.restart(): the node is null";
        return false;
    }
    return node->restart();
}

bool QmlStage::resize(Node *node, int size) const
{
    auto *group = qobject_cast<Group *>(node);
    if (!group) {
        qmlWarning(this) << "Stage.resize(): only a Group has a size";
        return false;
    }
    if (size < 0) {
        qmlWarning(this) << "Stage.resize(): the size must be >= 0, got " << size;
        return false;
    }
    group->setSize(size);
    return true;
}

} // namespace stage::qml
