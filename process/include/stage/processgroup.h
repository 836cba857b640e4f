#pragma once

// Stage::Process: crash isolation. A ProcessGroup's workers are child processes (the app's own
// binary run again), fed from a mailbox that stays in the parent. Link Stage::Process to use it.

#include <stage/group.h>
#include <stage/mailbox.h>
#include <stage/reply.h>

#include <QtCore/QByteArray>
#include <QtCore/QDataStream>
#include <QtCore/QIODevice>
#include <QtCore/QString>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>

#if defined(STAGE_STATIC)
#  define STAGE_PROCESS_EXPORT
#elif defined(STAGE_BUILDING_PROCESS)
#  define STAGE_PROCESS_EXPORT Q_DECL_EXPORT
#else
#  define STAGE_PROCESS_EXPORT Q_DECL_IMPORT
#endif

namespace stage {

/*! Log category of process groups and child processes: \c stage.process. */
STAGE_PROCESS_EXPORT const QLoggingCategory &lcProcess();

/*!
    Thrown in a child process by the typed entry points (registerProcessEntry<T>()) when a
    message cannot be decoded as T. Like any exception escaping an entry point, it fails the
    child: the parent reports "entry point threw: ..." and redelivers what the child held.
*/
class STAGE_PROCESS_EXPORT ProcessMessageError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

namespace detail {

template<typename T>
concept ProcessSerializable = std::is_same_v<T, QByteArray>
    || requires(QDataStream &stream, const T &in, T &out) {
           stream << in;
           stream >> out;
       };

/* What crosses the boundary for a message of type T: T itself, or a Request's payload (its
   Reply stays in the parent and is answered with the child's return value). */
template<typename T>
struct ProcessMessageTraits
{
    static constexpr bool serializable = ProcessSerializable<T>;
    static constexpr bool hasReply = false;
    static const T &payload(const T &message) { return message; }
};
template<typename Q, typename R>
struct ProcessMessageTraits<Request<Q, R>>
{
    static constexpr bool serializable = ProcessSerializable<Q> && ProcessSerializable<R>;
    static constexpr bool hasReply = true;
    static const Q &payload(const Request<Q, R> &message) { return message.payload; }
};

template<typename T>
QByteArray encodeProcessMessage(const T &value)
{
    if constexpr (std::is_same_v<T, QByteArray>) {
        return value;
    } else {
        QByteArray bytes;
        QDataStream stream(&bytes, QIODevice::WriteOnly);
        stream << value;
        return bytes;
    }
}

template<typename T>
T decodeProcessMessage(const QByteArray &bytes)
{
    if constexpr (std::is_same_v<T, QByteArray>) {
        return bytes;
    } else {
        T value{};
        QDataStream stream(bytes);
        stream >> value;
        if (stream.status() != QDataStream::Ok || !stream.atEnd())
            throw ProcessMessageError("stage::ProcessGroup: the message does not decode as its type");
        return value;
    }
}

template<typename R>
struct ReplyValue;
template<typename V>
struct ReplyValue<Reply<V>>
{
    using type = V;
};

/* The messages one child holds, oldest first: the mailbox's deliveries themselves, in a deque
   (no allocation per message). Owned by the worker run, so that they are destroyed while it
   unwinds: a failure puts each back counted against it, a stop uncounted. Not API. */
class STAGE_PROCESS_EXPORT HeldMessages
{
public:
    virtual ~HeldMessages();
    /* Takes the next queued message to the back; false if none is queued now. */
    virtual bool take() = 0;
    virtual qsizetype size() const = 0;
    /* Consumers that failed while holding message \a i before (a crashed, killed or hung child). */
    virtual int failures(qsizetype i) const = 0;
    virtual int previousDeliveries(qsizetype i) const = 0;
    /* Message \a i as it crosses the boundary (a QByteArray is shared, not copied). */
    virtual QByteArray payload(qsizetype i) const = 0;
    /* Acknowledges the oldest message (its child said it processed it) and drops it. */
    virtual void ackFront() = 0;
    /* The child's answer to Request \a i: decodes and sends it. False: this message expects no
       answer, or \a bytes do not decode (\a error says why); nothing was sent. */
    virtual bool reply(qsizetype i, const QByteArray &bytes, QString *error) = 0;
};

/* The mailbox side of a ProcessGroup, type-erased. Not API. */
class STAGE_PROCESS_EXPORT MessageSource
{
public:
    virtual ~MessageSource();
    /* An empty holder for one worker run. */
    virtual std::unique_ptr<HeldMessages> createHeld() const = 0;
    /* Closed and nothing left to take. */
    virtual bool isDrained() const = 0;
    virtual MailboxBase *object() const = 0;
};

template<typename T>
class HeldDeliveries final : public HeldMessages
{
public:
    using Traits = ProcessMessageTraits<T>;
    explicit HeldDeliveries(Mailbox<T> mailbox) : m_mailbox(std::move(mailbox)) {}
    // Newest first: each goes back to the front of the mailbox, so the oldest ends up first.
    ~HeldDeliveries() override
    {
        while (!m_held.empty())
            m_held.pop_back();
    }
    bool take() override
    {
        auto delivery = m_mailbox.tryReceive();
        if (!delivery)
            return false;
        m_held.push_back(std::move(*delivery));
        return true;
    }
    qsizetype size() const override { return qsizetype(m_held.size()); }
    int failures(qsizetype i) const override { return m_held[size_t(i)].failures(); }
    int previousDeliveries(qsizetype i) const override { return m_held[size_t(i)].previousDeliveries(); }
    QByteArray payload(qsizetype i) const override
    {
        return encodeProcessMessage(Traits::payload(*m_held[size_t(i)]));
    }
    void ackFront() override
    {
        m_held.front().ack();
        m_held.pop_front();
    }
    bool reply(qsizetype i, const QByteArray &bytes, QString *error) override
    {
        if constexpr (Traits::hasReply) {
            auto &delivery = m_held[size_t(i)];
            using R = std::remove_cvref_t<decltype(delivery->reply)>;
            try {
                delivery->reply.send(decodeProcessMessage<typename ReplyValue<R>::type>(bytes));
                return true;
            } catch (const std::exception &e) {
                *error = QString::fromUtf8(e.what());
                return false;
            }
        } else {
            Q_UNUSED(i);
            Q_UNUSED(bytes);
            *error = QStringLiteral("a reply to a message that expects none");
            return false;
        }
    }

private:
    Mailbox<T> m_mailbox;
    std::deque<Delivery<T>> m_held;
};

template<typename T>
class MailboxSource final : public MessageSource
{
public:
    explicit MailboxSource(Mailbox<T> mailbox) : m_mailbox(std::move(mailbox)) {}
    std::unique_ptr<HeldMessages> createHeld() const override
    {
        return std::make_unique<HeldDeliveries<T>>(m_mailbox);
    }
    bool isDrained() const override { return m_mailbox.isClosed() && m_mailbox.count() == 0; }
    MailboxBase *object() const override { return m_mailbox.object(); }

private:
    Mailbox<T> m_mailbox;
};

} // namespace detail

/*!
    The body of a child process for one message, run on the child's main thread, from its event
    loop. Returning normally acknowledges the message (the parent hears it after the handler
    returns); throwing fails the child (it reports the exception's what() and exits), and the
    parent redelivers what the child held. A crash (a signal, abort(), running out of memory)
    fails the child the same way, with "killed by signal N" as the reason.
*/
using ProcessHandler = std::function<void(const QByteArray &message)>;

namespace detail {
/* An entry point as the child runs it: the message's bytes in, the reply's bytes out (none for a
   handler that returns nothing). Not API. */
using RawProcessHandler = std::function<std::optional<QByteArray>(const QByteArray &message)>;
STAGE_PROCESS_EXPORT bool registerRawProcessEntry(const QString &name, RawProcessHandler handler);
} // namespace detail

/*!
    Registers \a handler as the entry point \a name, in every process of the app (the parent
    checks names in ProcessGroup::spawn(); the child runs the handler). Call it before
    runChildProcess() at the top of main(), or from a static initializer.
    Thread: any, before the first ProcessGroup starts. Returns false, with a warning, for an
    empty name, an empty handler or a name registered already.
*/
STAGE_PROCESS_EXPORT bool registerProcessEntry(const QString &name, ProcessHandler handler);

/*!
    As above for messages of type \a T (a stage::Mailbox<T> feeds the group): each message is
    decoded from its QDataStream form and handed to \a handler as \c const T &. A message that
    does not decode fails the child (ProcessMessageError).

    Replies: when the group is fed from a Mailbox<stage::Request<T, R>>, \a handler returns R:
    the child sends it back before its acknowledgement and the parent answers the request's
    Reply<R> with it (decoded there; an answer that does not decode fails the child, "protocol
    error"). A request whose child fails is redelivered with its Reply still pending, and a
    dead-lettered one fails its caller with stage::DeadLettered, as in-process. The parent and
    the child must agree on T and R: they are not checked across the boundary.
*/
template<typename T, typename F>
bool registerProcessEntry(const QString &name, F handler)
{
    static_assert(detail::ProcessSerializable<T>,
                  "stage::registerProcessEntry<T>: T needs QDataStream operators << and >> (or be QByteArray)");
    using Result = std::invoke_result_t<F &, const T &>;
    return detail::registerRawProcessEntry(
        name, [h = std::move(handler)](const QByteArray &bytes) mutable -> std::optional<QByteArray> {
            const T value = detail::decodeProcessMessage<T>(bytes);
            if constexpr (std::is_void_v<Result>) {
                h(value);
                return std::nullopt;
            } else {
                static_assert(detail::ProcessSerializable<std::remove_cvref_t<Result>>,
                              "stage::registerProcessEntry<T>: the reply type needs QDataStream operators");
                return detail::encodeProcessMessage(h(value));
            }
        });
}

/*! True if \a name was registered with registerProcessEntry(). Thread: any. */
STAGE_PROCESS_EXPORT bool isProcessEntryRegistered(const QString &name);

/*!
    Call this first in main(): \code if (auto code = stage::runChildProcess(argc, argv)) return *code; \endcode

    In the parent (no \c --stage-process=\<entry\> argument) it returns std::nullopt at once and
    does nothing else. In a child started by a ProcessGroup it runs the entry point: it makes
    sure the child dies with its parent (Linux: PR_SET_PDEATHSIG, then a check that the parent
    is still the one that started it), creates the QCoreApplication, connects to the parent,
    presents its secret, and handles messages until the parent asks it to stop or goes away. It
    returns the process's exit code: 0 after a stop or when the parent went away, 70 after the
    entry point threw, 120 for an unknown entry point, 2 when started by hand (no parent, no
    secret). Thread: the main thread, before any QCoreApplication exists.
*/
STAGE_PROCESS_EXPORT std::optional<int> runChildProcess(int &argc, char **argv);

class ProcessGroupShared;

/*!
    A group whose workers are child processes: code that may crash (a codec, a renderer, a
    device SDK) runs in its own process, and a segfault fails one worker instead of the app.

    \code
    // main.cpp
    int main(int argc, char **argv)
    {
        stage::registerProcessEntry<Page>(QStringLiteral("render"), [](const Page &page) {
            renderWithThirdPartyLibrary(page); // may segfault
        });
        if (auto code = stage::runChildProcess(argc, argv)) // in a child: runs "render", exits
            return *code;
        QApplication app(argc, argv);
        stage::Mailbox<Page> pages(256);
        stage::ProcessGroup renderers;
        renderers.setSize(2);
        renderers.setHeartbeatTimeout(5000);
        renderers.spawn(QStringLiteral("render"), pages); // 2 child processes
        ...
    }
    \endcode

    A ProcessGroup is a stage::Group (a Node: state, statistics, restart type, backoff, restart
    intensity, shutdownTimeout, a supervisor's child, shown in SupervisionTreeModel) in which
    each worker run is one child process: the app's own binary
    (QCoreApplication::applicationFilePath()) run again with \c --stage-process=\<entry\>.
    A child that crashes, exits, drops its connection, hangs or never connects ends its worker
    run as a failure whose reason says how ("killed by signal 11", "exit code 3", "missed
    heartbeat (...)", "did not connect within 10000 ms", "protocol error: ..."), and the group
    restarts it (a new process) by its policy, or gives up and escalates like any group.

    Delivery: the mailbox stays in the parent and is the source of truth. The group takes
    messages from it and sends each to a child over a local socket; a message is acknowledged
    only when the child says it processed it. Whatever a child held when it failed goes back to
    the front of the mailbox, counted as a failure of the message; after more than
    Mailbox::maxRedeliveries() failures it goes to the dead letters with the child's reason.
    A message that failed before is sent alone to a child holding nothing else, so one poison
    message cannot take the messages around it to the dead letters. (Known limit with
    maxInFlight() > 1: such a message, taken from the mailbox while its child still holds
    others, counts one more failure if that child fails before it was sent; Stage's Delivery has
    no way yet to put a message back uncounted from outside a stop.) At-least-once: a message a
    child processed but had not acknowledged when it died is processed again.
    What is lost: nothing in the mailbox. A message held at a stop (shutdown, resize, a
    supervisor's restart) goes back uncounted, and the child that held it may still have
    processed it (a duplicate).

    Detection: a crash (a signal, an exit, the connection dropped: the reason waits for the exit
    status, at most shutdownTimeout()); a hang: with heartbeatTimeout() > 0 the child sends a
    heartbeat from its own event loop every heartbeatTimeout()/4 ms, and a child that sends
    nothing (no heartbeat, no acknowledgement) for heartbeatTimeout() ms is failed ("missed
    heartbeat"), sent SIGTERM, and SIGKILL after shutdownTimeout(); a child that has not
    connected and presented its secret within connectTimeout() ms is failed and killed.
    Children die with the parent (PR_SET_PDEATHSIG, set between fork and exec and again in the
    child; note that Linux sends it when the thread that started the child ends, so keep a
    ProcessGroup on a thread that lives as long as it).

    Stopping: a stopped worker (shutdown(), a resize, a supervisor) asks its child to exit (it
    finishes the message it is handling) and kills it if it has not exited shutdownTimeout() ms
    later. The group's stopped() may come before its last child has exited; processCount()
    falls to 0 when it has. Destroying the group waits (blocking, at most shutdownTimeout())
    for every child and kills the rest: no child is left behind.

    Security: the socket is a QLocalServer with owner-only access (UserAccessOption) under an
    unguessable name (128 random bits), in $XDG_RUNTIME_DIR if set. Each child gets a 256-bit
    secret in its environment (not in argv) and must present it first; on Linux its pid is
    checked too (SO_PEERCRED). A connection that does not is dropped and logged (a warning under
    stage.process), counted in refusedConnections(), and gets nothing. Every frame from a child
    is checked (length at most maxFrameSize(), a known type, the exact size of that type, an
    acknowledgement of something it holds) before anything is decoded; a child breaking the
    protocol is failed ("protocol error: ...") and killed, never the parent.

    Feeding: a child's link sends it as many messages as its window (maxInFlight()) has room
    for, in one write, as soon as its acknowledgements arrive; a child acknowledges everything it
    processed from one read at once. No allocation and no signal connection per message.

    Warm spare (setWarmSpare()): one more child started ahead, connected and idle; a worker run
    that starts (a restart after a crash included) takes it instead of starting a process, so a
    replacement is fed at once.

    Defaults (besides Group's): maxInFlight 1, warmSpare false, connectTimeout 10000 ms,
    maxFrameSize 16 MiB, heartbeatTimeout 0 (no hang detection).

    Thread: like Group, used from its own thread; children are started from it. Errors: misuse
    (an unregistered entry point, spawn twice) is refused with a warning and returns false.
*/
class STAGE_PROCESS_EXPORT ProcessGroup : public stage::Group
{
    Q_OBJECT
    Q_CLASSINFO("StageKind", "ProcessGroup") // SupervisionTreeModel's KindRole
    Q_PROPERTY(QString entryPoint READ entryPoint NOTIFY entryPointChanged)
    Q_PROPERTY(int maxInFlight READ maxInFlight WRITE setMaxInFlight NOTIFY maxInFlightChanged)
    Q_PROPERTY(bool warmSpare READ hasWarmSpare WRITE setWarmSpare NOTIFY warmSpareChanged)
    Q_PROPERTY(int connectTimeout READ connectTimeout WRITE setConnectTimeout NOTIFY connectTimeoutChanged)
    Q_PROPERTY(int maxFrameSize READ maxFrameSize WRITE setMaxFrameSize NOTIFY maxFrameSizeChanged)
    Q_PROPERTY(int processCount READ processCount NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 refusedConnections READ refusedConnections NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 processedMessages READ processedMessages NOTIFY statisticsChanged)

public:
    /*! An empty group of size 1 (see Group); nothing runs before spawn(). Thread: the creating one is the group's. */
    explicit ProcessGroup(QObject *parent = nullptr);
    /*! Shuts the group down, then waits (blocking) at most shutdownTimeout() for its children and kills the rest. */
    ~ProcessGroup() override;

    /*!
        Starts size() children running entry point \a entryPoint, fed from \a mailbox (T with
        QDataStream operators, or QByteArray: anything else does not compile; or a
        stage::Request<Q, R> whose Q and R have them: the child's return value answers it). Returns false,
        with a warning, for an entry point not registered in this process, a second spawn(), or
        after shutdown (as Group::spawn()). Under a supervisor that does not run yet, the group
        waits to be started. Thread: the group's.
    */
    template<typename T>
    bool spawn(const QString &entryPoint, const Mailbox<T> &mailbox)
    {
        static_assert(detail::ProcessMessageTraits<T>::serializable,
                      "stage::ProcessGroup::spawn: T needs QDataStream operators << and >> (or be QByteArray); "
                      "for a stage::Request<Q, R>, Q and R do");
        return spawnSource(entryPoint, std::make_shared<detail::MailboxSource<T>>(mailbox), mailbox.object());
    }

    /*! The entry point its children run; empty until spawn() (then it never changes). */
    QString entryPoint() const;
    /*! Messages a child may hold unacknowledged (>= 1; default 1). Raise it for throughput. */
    int maxInFlight() const;
    void setMaxInFlight(int count); //!< < 1 is refused with a warning. NOTIFY maxInFlightChanged().
    /*!
        Keeps one spare child started ahead, connected and idle (default false), as Chromium keeps
        a spare renderer: a worker run that starts (the first ones, and each restart after a
        crash) takes the spare and another is started in the background, so a replacement is fed
        at once instead of after fork, exec, loading the app's libraries and connecting
        (restart_ms in W10: see docs/crash-isolation.md). Costs one more process, counted in
        processCount(). A spare that dies or misses its heartbeat is dropped silently (it held
        nothing); a group that stops or fails drops its spare. Thread: the group's.
    */
    bool hasWarmSpare() const;
    void setWarmSpare(bool on); //!< See hasWarmSpare(); NOTIFY warmSpareChanged().
    /*! True when the warm spare has connected, presented its secret and waits for work. */
    bool isSpareReady() const;
    /*! How long a child has to connect and present its secret, in ms (> 0; default 10000). */
    int connectTimeout() const;
    void setConnectTimeout(int milliseconds); //!< < 1 is refused with a warning. NOTIFY connectTimeoutChanged().
    /*! The largest frame a child may send, in bytes (>= 1024; default 16 MiB). */
    int maxFrameSize() const;
    void setMaxFrameSize(int bytes); //!< < 1024 is refused with a warning. NOTIFY maxFrameSizeChanged().

    /*! Child processes alive now, including those asked to exit that have not yet. */
    int processCount() const;
    /*! Connections dropped because they did not present a child's secret. */
    qint64 refusedConnections() const;
    /*! Messages the children acknowledged. */
    qint64 processedMessages() const;
    /*! The local server's full name (diagnostics); empty before the first spawn(). */
    QString serverName() const;

Q_SIGNALS:
    void entryPointChanged(const QString &entryPoint); //!< spawn() set entryPoint().
    void maxInFlightChanged(int count);               //!< maxInFlight() changed.
    void warmSpareChanged(bool on);                   //!< hasWarmSpare() changed.
    void connectTimeoutChanged(int milliseconds);     //!< connectTimeout() changed.
    void maxFrameSizeChanged(int bytes);              //!< maxFrameSize() changed.

private:
    friend class ProcessGroupShared;
    bool spawnSource(const QString &entryPoint, std::shared_ptr<detail::MessageSource> source, MailboxBase *object);
    void noteStatistics();

    std::shared_ptr<ProcessGroupShared> s;
};

} // namespace stage
