#pragma once

#include <stage/global.h>

#include <stdexcept>
#include <string>

namespace stage {

/*!
    Thrown by a Stage awaitable inside a worker whose stop was requested.

    It is the way a worker unwinds: every Stage awaitable (sleep, signal, future, offload, guard,
    child, and later mailbox receive/send) is a cancellation point that resumes the coroutine on its
    home thread with this exception once \c Worker::stopToken() is stopped. Let it propagate, so
    that the frame unwinds normally and its destructors run; catching it to clean up is fine, but
    rethrow it. It deliberately does not derive from stage::Error, so that
    \c catch (const stage::Error &) does not swallow a stop.
*/
class STAGE_EXPORT Cancelled : public std::exception
{
public:
    /*! "stage::Cancelled: the worker was asked to stop". */
    const char *what() const noexcept override;
};

/*! Base of every error Stage reports by exception (not stage::Cancelled). */
class STAGE_EXPORT Error : public std::runtime_error
{
public:
    /*! An error whose what() is \a what. */
    explicit Error(const std::string &what);
};

/*! The object an awaitable was waiting on was destroyed before it delivered (stage::signal()). */
class STAGE_EXPORT ObjectDestroyed : public Error
{
public:
    /*! Constructs the error with \a what as its what() (Error's constructor). */
    using Error::Error;
};

/*! A wait with a deadline ran out of time (stage::waitFor()). */
class STAGE_EXPORT TimeoutError : public Error
{
public:
    /*! Constructs the error with \a what as its what() (Error's constructor). */
    using Error::Error;
};

/*! The work was refused: a call after shutdown, an empty factory, a bad argument. */
class STAGE_EXPORT InvalidOperation : public Error
{
public:
    /*! Constructs the error with \a what as its what() (Error's constructor). */
    using Error::Error;
};

} // namespace stage

namespace stage {

/*! The mailbox is closed: a send is refused, or a receive found it closed and drained. */
class STAGE_EXPORT MailboxClosed : public Error
{
public:
    /*! Constructs the error with \a what as its what() (Error's constructor). */
    using Error::Error;
};

/*!
    The journal of a durable or distributed mailbox (Stage::Durable, Stage::Redis) failed: a
    message could not be recorded (too large, not encodable), or could not be made durable (a
    write or commit failed, the connection is gone for good). what() names the mailbox and the
    cause. A send that throws it did not complete: the message may not survive the process.
*/
class STAGE_EXPORT JournalError : public Error
{
public:
    /*! Constructs the error with \a what as its what() (Error's constructor). */
    using Error::Error;
};

/*!
    A reply can never come: its stage::Reply was destroyed (or its thread ended) without a value,
    or the request carrying it was dead-lettered (stage::DeadLettered, a subclass). Retrying on
    \c catch (const stage::BrokenReply &) covers both.
*/
class STAGE_EXPORT BrokenReply : public Error
{
public:
    /*! Constructs the error with \a what as its what() (Error's constructor). */
    using Error::Error;
};

/*!
    A reply can never come because the message carrying it was moved to its mailbox's dead letters
    (its consumers failed more than Mailbox::maxRedeliveries() times): the receiver gets this at
    once instead of waiting for a Reply that sits in the dead letters. A stage::BrokenReply, so
    "retry until answered" loops written for a broken reply handle it too.

    what() is "dead-lettered after N failed deliveries: <reason>", where the reason is the dead
    letter's (the what() of the exception its last consumer failed with, when known).
    Copying is noexcept, as for every std::exception.
*/
class STAGE_EXPORT DeadLettered : public BrokenReply
{
public:
    /*!
        The error for a message dead-lettered after \a failures failed deliveries, the last with \a reason;
        what() is "dead-lettered after <failures> failed deliveries: <reason>".
    */
    DeadLettered(int failures, const std::string &reason);

    /*! How many consumers failed while holding the message. */
    int failures() const noexcept { return m_failures; }
    /*! The dead letter's reason: the tail of what(). */
    const char *reason() const noexcept { return what() + m_reasonOffset; }

private:
    int m_failures;
    int m_reasonOffset;
};

} // namespace stage
