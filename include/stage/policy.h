#pragma once

#include <stage/global.h>

#include <QtCore/QMetaType>
#include <QtCore/QObject>

#include <chrono>

namespace stage {

Q_NAMESPACE_EXPORT(STAGE_EXPORT)

/*!
    When a worker (or a supervised child) that ended is started again; Erlang's names.
    The default of a stage::Group is Transient.
*/
enum class RestartType {
    Permanent, //!< always restarted, whatever the reason it ended (the seed's Always)
    Transient, //!< restarted only after a failure; a normal return ends it for good (the seed's OnPanic)
    Temporary, //!< never restarted
};
Q_ENUM_NS(RestartType)

/*!
    How a stop ends a worker that is suspended in a Stage awaitable (Group::stopMode()).

    Unwind, the default, resumes the frame with a stage::Cancelled exception: it unwinds through
    every destructor and catch block, as any exception would. Destroy destroys the frame in place
    instead when the worker's body itself (not a coroutine it awaits) waits in a Stage awaitable:
    the destructors of its locals run (a Delivery it holds goes back to its mailbox, uncounted),
    its catch blocks and the code after the suspension do not, as with tokio's abort(). That costs
    no throw (about 1 us each here, most of a mass stop). Any Stage awaitable counts, guard()
    included, also after a foreign resumption; a body waiting inside a coroutine it awaits (a child
    task, stage::child(), gracefulShutdown()'s work) is unwound as with Unwind.
*/
enum class StopMode {
    Unwind,  //!< resume with stage::Cancelled: destructors and catch blocks run
    Destroy, //!< destroy a body suspended in a Stage awaitable: destructors run, catch blocks do not
};
Q_ENUM_NS(StopMode)

/*!
    The delay before a restart: the first restart after a healthy run is immediate; consecutive
    failures then wait exponentially longer, capped, with random jitter so that many workers
    failing together do not restart in lockstep. The streak resets once a worker has run for
    resetAfter without failing.

    Defaults (exponential()): initial 10 ms, multiplier 2, maximum 5000 ms, jitter 0.2 (each delay
    is drawn uniformly from [d * (1 - jitter), d]), resetAfter 5000 ms. none() restarts at once,
    always (benchmarks, tests).
*/
class STAGE_EXPORT Backoff
{
    Q_GADGET
    Q_PROPERTY(bool none READ isNone)
    Q_PROPERTY(int initialMs READ initialMs)
    Q_PROPERTY(int maximumMs READ maximumMs)

public:
    /*! The default: exponential(). */
    Backoff() noexcept = default;
    /*!
        Restart at once, every time (no delay): for tests and for restart storms that should hit the
        intensity limit quickly. In QML: Stage.noBackoff().
    */
    static Backoff none() noexcept;
    /*!
        The first restart of a failure streak at once, then \a initial, multiplied by \a multiplier at each
        restart up to \a maximum, each delay shortened by a random part of up to \a jitter (a fraction: 0.2
        is up to 20%); the streak resets after \a resetAfter of healthy running. The defaults are the
        default Backoff. In QML: Stage.exponentialBackoff().
    */
    static Backoff exponential(std::chrono::milliseconds initial = std::chrono::milliseconds(10),
                               std::chrono::milliseconds maximum = std::chrono::milliseconds(5000),
                               double multiplier = 2.0, double jitter = 0.2,
                               std::chrono::milliseconds resetAfter = std::chrono::milliseconds(5000)) noexcept;

    /*! True for none(). */
    bool isNone() const noexcept { return m_none; }
    /*! The first delay after the immediate restart, in ms. */
    int initialMs() const noexcept { return int(m_initial.count()); }
    /*! The longest delay, in ms. */
    int maximumMs() const noexcept { return int(m_maximum.count()); }
    /*! The factor between consecutive delays. */
    double multiplier() const noexcept { return m_multiplier; }
    /*! How much of each delay may be randomly cut, as a fraction (0.2: up to 20% shorter). */
    double jitter() const noexcept { return m_jitter; }
    /*! How long a worker must run without failing for its failure streak to reset. */
    std::chrono::milliseconds resetAfter() const noexcept { return m_resetAfter; }

    /*!
        The delay before restart number \a streak of a failure streak (1 for the first restart,
        which is always immediate). \a random is uniform in [0, 1).
    */
    std::chrono::milliseconds delay(int streak, double random) const noexcept;

    friend bool operator==(const Backoff &, const Backoff &) = default;

private:
    bool m_none = false;
    std::chrono::milliseconds m_initial{10};
    std::chrono::milliseconds m_maximum{5000};
    double m_multiplier = 2.0;
    double m_jitter = 0.2;
    std::chrono::milliseconds m_resetAfter{5000};
};

} // namespace stage

Q_DECLARE_METATYPE(stage::Backoff)
