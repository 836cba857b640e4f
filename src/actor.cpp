#include <stage/actor.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QMetaObject>
#include <QtCore/QMetaProperty>
#include <QtCore/QThread>

#include <cxxabi.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <unordered_map>
#include <mutex>
#include <vector>
#include <string>

Q_LOGGING_CATEGORY(lcStageActor, "stage.actor", QtInfoMsg)

namespace stage {

const QLoggingCategory &lcActor()
{
    return lcStageActor();
}

namespace detail {

ActorShared::ActorShared() = default;
ActorShared::~ActorShared() = default;

QString ActorShared::name() const
{
    std::lock_guard lock(m_mutex);
    return m_name;
}

void ActorShared::setName(const QString &name)
{
    std::lock_guard lock(m_mutex);
    m_name = name;
}

void ActorShared::setNode(ActorBase *node, QObject *object)
{
    std::lock_guard lock(m_mutex);
    m_node = node;
    m_object = object;
}

QThread *ActorShared::nodeThread() const
{
    std::lock_guard lock(m_mutex);
    return m_object ? m_object->thread() : nullptr;
}

void ActorShared::noteExpired() noexcept
{
    m_expiredAsks.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(m_mutex);
    if (m_node) {
        // The node's statistics are notified on its own thread (markDirty() is not thread-safe);
        // a call queued to a node deleted meanwhile is dropped with it.
        ActorBase *node = m_node;
        QMetaObject::invokeMethod(node, [node] { node->noteStatistics(); }, Qt::QueuedConnection);
    }
}

QMetaObject::Connection ActorShared::connectDown(QObject *context, std::function<void(const QString &)> callback)
{
    std::lock_guard lock(m_mutex); // the node cannot be destroyed meanwhile (~ActorBase takes it)
    if (!m_node)
        return {};
    return QObject::connect(m_node, &ActorBase::down, context, std::move(callback));
}

QMetaObject::Connection monitorActor(ActorShared *shared, QObject *context, std::function<void(const QString &)> callback)
{
    if (!shared) {
        qCWarning(lcStageActor, "stage::monitor: the reference is null (default-constructed); nothing is monitored");
        return {};
    }
    if (!context) {
        qCWarning(lcStageActor, "stage::monitor: the context is null; nothing is monitored");
        return {};
    }
    QMetaObject::Connection connection = shared->connectDown(context, std::move(callback));
    if (!connection)
        qCWarning(lcStageActor, "stage::monitor: the actor has been destroyed; nothing is monitored");
    return connection;
}

namespace {
// Every Registry, and their entries, under one mutex (registries are few; lookups are short).
std::mutex g_registriesMutex;
std::vector<Registry *> g_registries;

// The runs of actors by worker: which actor an ask made from a handler comes from.
std::mutex g_workersMutex;
struct ActorRun
{
    std::weak_ptr<ActorShared> shared;
    const void *run = nullptr;
};
std::unordered_map<Worker *, ActorRun> g_actorWorkers;
} // namespace

struct RegistryAccess
{
    static RegisteredActor entry(const Registry *registry, const QString &name) { return registry->entry(name); }
    static void removeActor(const ActorShared *shared)
    {
        std::vector<RegisteredActor> removed; // released outside the lock
        std::lock_guard lock(g_registriesMutex);
        for (Registry *registry : g_registries) {
            bool changed = false;
            for (auto it = registry->m_entries.begin(); it != registry->m_entries.end();) {
                if (it->second.shared == shared) {
                    removed.push_back(std::move(it->second));
                    it = registry->m_entries.erase(it);
                    changed = true;
                } else {
                    ++it;
                }
            }
            if (changed)
                registry->notifyChanged();
        }
    }
};

RegisteredActor registeredActorImpl(const QString &name)
{
    return RegistryAccess::entry(Registry::global(), name);
}

void unregisterActorsOf(const ActorShared *shared)
{
    RegistryAccess::removeActor(shared);
}

void registerActorWorker(Worker *worker, const std::shared_ptr<ActorShared> &shared, const void *run)
{
    std::lock_guard lock(g_workersMutex);
    g_actorWorkers[worker] = ActorRun{shared, run};
}

bool unregisterActorWorker(Worker *worker, const void *run)
{
    std::lock_guard lock(g_workersMutex);
    auto it = g_actorWorkers.find(worker);
    if (it == g_actorWorkers.end() || it->second.run != run)
        return false;
    g_actorWorkers.erase(it);
    return true;
}

void ActorShared::keepDeferred(quint64 serial)
{
    std::lock_guard lock(deferredMutex);
    // Chains whose reply has been answered (or dropped) are no longer waited on.
    std::erase_if(deferred, [](const Deferred &d) { return !d.chain->isPending(); });
    if (!currentChain->isPending())
        return; // answered before the handler returned: nothing deferred
    constexpr std::size_t kMaxDeferred = 64; // the oldest goes first (then only its cycle is missed)
    if (deferred.size() >= kMaxDeferred)
        deferred.erase(deferred.begin());
    deferred.push_back(Deferred{currentChain, serial});
}

namespace {
QString plainName(const ActorShared *shared)
{
    const QString name = shared ? shared->name() : QString();
    return name.isEmpty() ? QStringLiteral("(unnamed actor)") : name;
}
} // namespace

AskContext askContextSlow(Worker *current, const ActorShared *target, const char *function,
                          const std::type_info &message)
{
    std::shared_ptr<ActorShared> self;
    {
        std::lock_guard lock(g_workersMutex);
        auto it = g_actorWorkers.find(current);
        if (it == g_actorWorkers.end())
            return {}; // not an actor's handler
        self = it->second.shared.lock();
    }
    if (!self)
        return {};
    // What the asker is doing on behalf of others: the message its handler handles now (this
    // thread is its run's), and the replies it took to answer later that are still pending.
    struct Candidate
    {
        AskChainPtr chain;
        quint64 serial;
    };
    std::vector<Candidate> candidates;
    if (const quint64 now = self->handling.load(std::memory_order_acquire))
        candidates.push_back(Candidate{self->currentChain, now});
    {
        std::lock_guard lock(self->deferredMutex);
        std::erase_if(self->deferred, [](const ActorShared::Deferred &d) { return !d.chain->isPending(); });
        for (auto it = self->deferred.rbegin(); it != self->deferred.rend(); ++it)
            candidates.push_back(Candidate{it->chain, it->serial});
    }
    if (candidates.empty())
        return {};
    auto chainOf = [&self](const Candidate &c) {
        auto chain = std::make_shared<AskChain>();
        if (c.chain)
            chain->links = c.chain->links;
        chain->links.push_back(AskLink{self, c.serial});
        return chain;
    };
    AskContext out;
    // A cycle: the target is still in the handler that waits (transitively) for this ask.
    const quint64 targetBusy = target->handling.load(std::memory_order_acquire);
    if (targetBusy) {
        for (const Candidate &c : candidates) {
            auto chain = chainOf(c);
            for (std::size_t i = 0; i < chain->links.size(); ++i) {
                const AskLink &link = chain->links[i];
                if (link.actor.get() != target || link.serial != targetBusy)
                    continue;
                QStringList names;
                for (std::size_t j = i; j < chain->links.size(); ++j)
                    names.append(plainName(chain->links[j].actor.get()));
                names.append(plainName(target));
                out.cycle = names.join(QStringLiteral(" -> "));
                qCWarning(lcStageActor,
                          "stage::%s: ask cycle: %s: actor %s is still in the handler that waits for this ask (%s), "
                          "which will end in its timeout",
                          function, qPrintable(out.cycle), qPrintable(plainName(target)),
                          qPrintable(actorTypeName(message)));
                out.chain = std::move(chain);
                return out;
            }
        }
    }
    out.chain = chainOf(candidates.front());
    return out;
}

void warnActorProtocol(const char *function, const QString &name, const std::type_info &registered,
                       const std::type_info &wanted)
{
    qCWarning(lcStageActor, "stage::%s: actor %s has the protocol %s, not %s; a null reference is returned", function,
              qPrintable(name), qPrintable(actorTypeName(registered)), qPrintable(actorTypeName(wanted)));
}

QString gadgetTypeName(const QMetaObject &metaObject)
{
    const QString name = QString::fromLatin1(metaObject.className());
    const qsizetype colons = name.lastIndexOf(QLatin1String("::"));
    return colons < 0 ? name : name.mid(colons + 2);
}

QStringList gadgetFields(const QMetaObject &metaObject)
{
    QStringList names;
    for (int i = 0; i < metaObject.propertyCount(); ++i) {
        const QMetaProperty property = metaObject.property(i);
        if (property.isWritable())
            names.append(QString::fromLatin1(property.name()));
    }
    return names;
}

namespace {

bool isIntegral(int id)
{
    switch (id) {
    case QMetaType::Int: case QMetaType::UInt: case QMetaType::LongLong: case QMetaType::ULongLong:
    case QMetaType::Long: case QMetaType::ULong: case QMetaType::Short: case QMetaType::UShort:
    case QMetaType::Char: case QMetaType::SChar: case QMetaType::UChar:
        return true;
    default:
        return false;
    }
}

bool isNumber(int id)
{
    return isIntegral(id) || id == QMetaType::Double || id == QMetaType::Float;
}

template<typename T>
bool fits(double value)
{
    // The upper bound as a power of two, exact in a double (max() itself may round up).
    return value >= double(std::numeric_limits<T>::min())
        && value < 2.0 * double(std::numeric_limits<T>::max() / 2 + 1);
}

bool fitsIntegral(int id, double value)
{
    switch (id) {
    case QMetaType::Int: return fits<int>(value);
    case QMetaType::UInt: return fits<uint>(value);
    case QMetaType::LongLong: return fits<qint64>(value);
    case QMetaType::ULongLong: return fits<quint64>(value);
    case QMetaType::Long: return fits<long>(value);
    case QMetaType::ULong: return fits<unsigned long>(value);
    case QMetaType::Short: return fits<short>(value);
    case QMetaType::UShort: return fits<ushort>(value);
    case QMetaType::Char: return fits<char>(value);
    case QMetaType::SChar: return fits<signed char>(value);
    case QMetaType::UChar: return fits<uchar>(value);
    default: return false;
    }
}

/* Converts \a value to \a target without loss, or says why not. */
bool convertField(QVariant &value, QMetaType target, QString *why)
{
    const QMetaType source = value.metaType();
    if (source == target)
        return true;
    if (!value.isValid()) {
        *why = QStringLiteral("undefined");
        return false;
    }
    const int to = target.id();
    const int from = source.id();
    if (isNumber(to)) {
        if (!isNumber(from)) {
            *why = QStringLiteral("a %1").arg(QString::fromLatin1(source.name()));
            return false;
        }
        if (isIntegral(to) && !isIntegral(from)) {
            const double number = value.toDouble();
            if (!std::isfinite(number) || number != std::trunc(number)) {
                *why = QStringLiteral("%1 (not an integer)").arg(number);
                return false;
            }
        }
        if (isIntegral(to) && !fitsIntegral(to, value.toDouble())) {
            *why = QStringLiteral("%1 (out of range)").arg(value.toString());
            return false;
        }
        return value.convert(target);
    }
    if (to == QMetaType::QString || to == QMetaType::Bool || !QMetaType::canConvert(source, target)) {
        *why = QStringLiteral("a %1").arg(QString::fromLatin1(source.name()));
        return false;
    }
    QVariant converted = value;
    if (!converted.convert(target)) {
        *why = QStringLiteral("a %1 that does not convert").arg(QString::fromLatin1(source.name()));
        return false;
    }
    value = std::move(converted);
    return true;
}

} // namespace

bool readGadgetFields(const QMetaObject &metaObject, void *gadget, const QVariantMap &fields, QString *error)
{
    const QString type = gadgetTypeName(metaObject);
    const QStringList names = gadgetFields(metaObject);
    const QString known = names.isEmpty() ? QStringLiteral("it has none") : QStringLiteral("fields: ") + names.join(QStringLiteral(", "));
    for (auto it = fields.cbegin(); it != fields.cend(); ++it) {
        if (!names.contains(it.key())) {
            *error = QStringLiteral("%1 has no field \"%2\" (%3)").arg(type, it.key(), known);
            return false;
        }
    }
    for (int i = 0; i < metaObject.propertyCount(); ++i) {
        const QMetaProperty property = metaObject.property(i);
        if (!property.isWritable())
            continue;
        const QString name = QString::fromLatin1(property.name());
        auto it = fields.constFind(name);
        if (it == fields.cend()) {
            *error = QStringLiteral("%1 needs the field \"%2\" (%3)").arg(type, name, known);
            return false;
        }
        QVariant value = *it;
        QString why;
        if (!convertField(value, property.metaType(), &why) || !property.writeOnGadget(gadget, value)) {
            *error = QStringLiteral("%1.%2 (%3) cannot take %4")
                         .arg(type, name, QString::fromLatin1(property.metaType().name()),
                              why.isEmpty() ? QStringLiteral("this value") : why);
            return false;
        }
    }
    return true;
}

QVariantMap gadgetToMap(const QMetaObject &metaObject, const void *gadget)
{
    QVariantMap map;
    for (int i = 0; i < metaObject.propertyCount(); ++i) {
        const QMetaProperty property = metaObject.property(i);
        map.insert(QString::fromLatin1(property.name()), property.readOnGadget(gadget));
    }
    return map;
}

AskExpired::AskExpired() : BrokenReply("stage::Actor: the ask was dropped unprocessed: its caller's timeout had passed")
{}

QString actorTypeName(const std::type_info &type)
{
    int status = 0;
    char *demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
    QString name = status == 0 && demangled ? QString::fromUtf8(demangled) : QString::fromUtf8(type.name());
    std::free(demangled);
    return name;
}

namespace {
QString displayName(const ActorShared *shared)
{
    const QString name = shared ? shared->name() : QString();
    return name.isEmpty() ? QStringLiteral("(unnamed actor)") : QLatin1Char('\'') + name + QLatin1Char('\'');
}
} // namespace

std::exception_ptr askRefusal(const ActorShared *shared, std::chrono::milliseconds timeout, const char *function,
                              const std::type_info &message, bool blocking)
{
    if (!shared) {
        return std::make_exception_ptr(InvalidOperation(
            std::string("stage::") + function + ": the reference is null (default-constructed); nothing was sent"));
    }
    if (timeout.count() == 0) {
        return std::make_exception_ptr(InvalidOperation(
            std::string("stage::") + function + ": the timeout must be positive (negative: the actor's askTimeout()), "
            "got 0 ms; nothing was sent"));
    }
    Worker *running = shared->worker.load(std::memory_order_acquire);
    if (running && Worker::current() == running) {
        return std::make_exception_ptr(InvalidOperation(
            std::string("stage::") + function + ": actor " + displayName(shared).toStdString() + " asked itself ("
            + actorTypeName(message).toStdString()
            + ") from its own handler, which would wait for its own answer; nothing was sent (tell() it instead)"));
    }
    if (blocking && (shared->nodeThread() == QThread::currentThread()
                     || shared->homeThread.load(std::memory_order_acquire) == QThread::currentThread())) {
        return std::make_exception_ptr(InvalidOperation(
            std::string("stage::") + function + ": called on the thread of actor " + displayName(shared).toStdString()
            + ", which would wait for itself; nothing was sent (use ask() or askFuture())"));
    }
    return nullptr;
}

void rethrowAskError(std::exception_ptr error, const ActorShared *shared, const std::type_info &message,
                     std::chrono::milliseconds timeout, const QString &cycle)
{
    try {
        std::rethrow_exception(error);
    } catch (const TimeoutError &) {
    } catch (const AskExpired &) {
    }
    // Only timeouts get here.
    const QString what = QStringLiteral("stage::Actor: actor %1 did not answer %2 within %3 ms")
                             .arg(displayName(shared), actorTypeName(message))
                             .arg(timeout.count())
        + (cycle.isEmpty() ? QString() : QStringLiteral(" (ask cycle: %1)").arg(cycle));
    qCDebug(lcStageActor, "%s", qPrintable(what));
    throw TimeoutError(what.toStdString());
}

void warnNullActorRef(const char *function)
{
    qCWarning(lcStageActor, "stage::%s: the reference is null (default-constructed); the message is dropped", function);
}

void warnUnanswered(const ActorShared *shared, const std::type_info &message)
{
    qCWarning(lcStageActor,
              "stage::Actor: the handler of %s in actor %s returned without answering its stage::Reply or taking it; "
              "the caller gets stage::BrokenReply",
              qPrintable(actorTypeName(message)), qPrintable(displayName(shared)));
}

} // namespace detail

bool unregisterActor(const QString &name)
{
    return Registry::global()->remove(name);
}

QStringList registeredActors()
{
    return Registry::global()->names();
}

// ---- Registry ----

Registry::Registry(QObject *parent) : QObject(parent)
{
    std::lock_guard lock(detail::g_registriesMutex);
    detail::g_registries.push_back(this);
}

Registry::~Registry()
{
    std::map<QString, detail::RegisteredActor> entries; // released outside the lock
    std::lock_guard lock(detail::g_registriesMutex);
    std::erase(detail::g_registries, this);
    entries.swap(m_entries);
}

Registry *Registry::global()
{
    // Never destroyed: actors destroyed during static destruction still find it.
    static Registry *const registry = [] {
        auto *r = new Registry;
        r->setObjectName(QStringLiteral("global"));
        // namesChanged() is queued to the registry's thread: the application's, when there is one.
        if (QCoreApplication *app = QCoreApplication::instance())
            r->moveToThread(app->thread());
        return r;
    }();
    return registry;
}

Registry *Registry::nearest(const QObject *object)
{
    for (const QObject *o = object; o; o = o->parent()) {
        if (auto *self = qobject_cast<Registry *>(const_cast<QObject *>(o)); self && o == object)
            return self;
        for (QObject *child : o->children()) {
            if (auto *registry = qobject_cast<Registry *>(child))
                return registry;
        }
    }
    return global();
}

namespace {
QString registryName(const Registry *registry)
{
    const QString name = registry->objectName();
    return name.isEmpty() ? QStringLiteral("(unnamed registry)") : QLatin1Char('"') + name + QLatin1Char('"');
}
} // namespace

bool Registry::addEntry(const QString &name, detail::RegisteredActor actor, const char *function)
{
    if (name.isEmpty()) {
        qCWarning(lcStageActor, "stage::%s: the name is empty; nothing is registered", function);
        return false;
    }
    if (!actor.shared) {
        qCWarning(lcStageActor, "stage::%s: the reference is null (default-constructed); nothing is registered as %s",
                  function, qPrintable(name));
        return false;
    }
    std::lock_guard lock(detail::g_registriesMutex);
    auto it = m_entries.find(name);
    if (it != m_entries.end()) {
        if (it->second.shared == actor.shared)
            return true; // the same actor again
        qCWarning(lcStageActor,
                  "stage::%s: the name %s is taken in registry %s by actor %s; actor %s is not registered "
                  "(remove the name first)",
                  function, qPrintable(name), qPrintable(registryName(this)),
                  qPrintable(detail::displayName(it->second.shared)), qPrintable(detail::displayName(actor.shared)));
        return false;
    }
    m_entries.emplace(name, std::move(actor));
    notifyChanged();
    return true;
}

detail::RegisteredActor Registry::entry(const QString &name) const
{
    std::lock_guard lock(detail::g_registriesMutex);
    auto it = m_entries.find(name);
    return it == m_entries.end() ? detail::RegisteredActor{} : it->second;
}

detail::RegisteredActor Registry::lookupEntry(const QObject *from, const QString &name)
{
    std::vector<const Registry *> chain; // nearest first
    for (const QObject *o = from; o; o = o->parent()) {
        if (auto *self = qobject_cast<const Registry *>(o); self && o == from)
            chain.push_back(self);
        for (const QObject *child : o->children()) {
            if (auto *registry = qobject_cast<const Registry *>(child))
                chain.push_back(registry);
        }
    }
    chain.push_back(global());
    for (const Registry *registry : chain) {
        detail::RegisteredActor found = registry->entry(name);
        if (found.ref)
            return found;
    }
    return {};
}

bool Registry::remove(const QString &name)
{
    detail::RegisteredActor removed; // released outside the lock
    std::lock_guard lock(detail::g_registriesMutex);
    auto it = m_entries.find(name);
    if (it == m_entries.end())
        return false;
    removed = std::move(it->second);
    m_entries.erase(it);
    notifyChanged();
    return true;
}

bool Registry::contains(const QString &name) const
{
    std::lock_guard lock(detail::g_registriesMutex);
    return m_entries.count(name) != 0;
}

QStringList Registry::names() const
{
    std::lock_guard lock(detail::g_registriesMutex);
    QStringList out;
    out.reserve(qsizetype(m_entries.size()));
    for (const auto &entry : m_entries)
        out.append(entry.first);
    return out;
}

int Registry::count() const
{
    std::lock_guard lock(detail::g_registriesMutex);
    return int(m_entries.size());
}

void Registry::notifyChanged()
{
    // Queued even on the registry's own thread: the mutex is held here, and a slot may call back.
    QMetaObject::invokeMethod(this, &Registry::namesChanged, Qt::QueuedConnection);
}

ActorBase::ActorBase(QObject *parent) : Group(parent), m_shared(std::make_shared<detail::ActorShared>())
{
    m_shared->setNode(this, this);
    m_shared->homeThread.store(thread(), std::memory_order_release);
    connect(this, &QObject::objectNameChanged, this, [this](const QString &name) { m_shared->setName(name); });
    // Once per failed run, with its reason, before the restart is decided.
    connect(this, &Group::workerFinished, this, [this](const WorkerExit &exit) {
        if (exit.isFailure())
            Q_EMIT down(exit.reason);
    });
    // A group of one: a size set through the meta-object (QML) is put back too.
    connect(this, &Group::sizeChanged, this, [this](int size) {
        if (size != 1) {
            qCWarning(lcStageActor, "Actor::setSize: an actor has exactly one worker, got %d; set back to 1", size);
            Group::setSize(1);
        }
    });
}

ActorBase::~ActorBase()
{
    // The group stops its worker after this (~Group): its end must not reach the lambdas above,
    // whose object is half destroyed by then.
    disconnect(this, nullptr, this, nullptr);
    Q_EMIT down(QStringLiteral("destroyed"));
    detail::unregisterActorsOf(m_shared.get());
    m_shared->setNode(nullptr, nullptr);
}

int ActorBase::askTimeout() const
{
    return int(m_shared->askTimeoutMs.load(std::memory_order_relaxed));
}

void ActorBase::setAskTimeout(int milliseconds)
{
    if (milliseconds < 1) {
        qCWarning(lcStageActor, "Actor::setAskTimeout: the timeout must be >= 1 ms, got %d; ignored", milliseconds);
        return;
    }
    if (m_shared->askTimeoutMs.exchange(milliseconds, std::memory_order_relaxed) == milliseconds)
        return;
    Q_EMIT askTimeoutChanged(milliseconds);
}

qint64 ActorBase::expiredAsks() const
{
    return m_shared->expiredAsks();
}

void ActorBase::setSize(int size)
{
    if (size != 1) {
        qCWarning(lcStageActor, "Actor::setSize: an actor has exactly one worker, got %d; ignored", size);
        return;
    }
    Group::setSize(1);
}

bool ActorBase::spawnRun(WorkerFactory factory)
{
    return Group::spawn(std::move(factory));
}

void ActorBase::noteStatistics()
{
    markDirty();
}

} // namespace stage
