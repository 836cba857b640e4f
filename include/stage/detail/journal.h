#pragma once

// The journal of a durable or distributed mailbox: the contract between stage::Mailbox<T> and
// the backends that keep its messages outside the process's memory (Stage::Durable: a SQLite
// file; Stage::Redis: a Redis stream). Not API: the names in stage::detail may change.

#include <stage/global.h>

#include <QtCore/QByteArray>
#include <QtCore/QString>

#include <chrono>
#include <memory>
#include <vector>

namespace stage {
namespace detail {

class Waiter;

/*
    Where a journaled mailbox keeps its messages. The mailbox stays what consumers receive from
    (its in-memory queue, its Delivery, its redelivery and dead-letter rules, unchanged); the
    journal records what happens to each message so that what was not acknowledged survives the
    process, and (for a shared journal such as Redis) reaches consumers in other processes.

    Ids: the journal names each message with an id > 0, unique within the mailbox, given by
    append() or by the journal's feed (MailboxAccess::inject()).

    Calls from the mailbox (the "hooks" below) come from any thread, some with the mailbox's
    locks held (append() under the producer lock, requeued() under both): a hook must not block
    (no I/O, no waiting for a commit), must not call back into the mailbox, and must not throw
    except where stated. It queues the operation for the journal's own thread, which applies
    the operations of one mailbox in the order of the calls. For one id the mailbox calls, in
    this order: append() (or the journal injected it), then any number of rounds of delivered()
    followed by requeued(); finally one of acknowledged(), dropped() or deadLettered(), and
    after deadLettered() at most one deadLettersRemoved() naming it.

    What a journal must guarantee for a mailbox to keep its promises:
    \list
    \li A message whose append() ticket was reported durable (whenDurable(), waitDurable())
        survives the process (kill -9), and is injected again by the next open of the journal
        unless it was acknowledged, dropped or dead-lettered before.
    \li A message delivered and not acknowledged when the process died comes back with its
        delivery and failure counts (the journal decides whether the death counts as a failure:
        both backends count it, so a message that kills the process every time is dead-lettered
        instead of looping).
    \li Nothing is applied twice: an acknowledgement or removal of an id the journal no longer
        holds is ignored.
    \endlist
*/
class STAGE_EXPORT JournalBase
{
public:
    JournalBase() = default;
    virtual ~JournalBase();
    JournalBase(const JournalBase &) = delete;
    JournalBase &operator=(const JournalBase &) = delete;

    /* True: a message sent through the mailbox is queued in this process's memory at once, and
       appended (the SQLite journal: this process is the only consumer). False: a send only
       appends, and messages reach the mailbox's queue only through the journal's feed
       (MailboxAccess::inject(), Redis: a consumer in another process may get it instead). */
    virtual bool queuesLocally() const noexcept = 0;

    /* Any thread, under the mailbox's producer lock, in queue order: records the encoded
       message (the bytes are the journal's) and returns its id; sets \a ticket to the commit
       ticket of this append (tickets grow with each append; see whenDurable()). Must not block.
       Throws if the message cannot be taken (then nothing was recorded and the send fails). */
    virtual quint64 append(QByteArray &&bytes, quint64 &ticket) = 0;

    /* The message \a id was handed to a consumer (its delivery count grows by one). */
    virtual void delivered(quint64 id) noexcept = 0;
    /* The message \a id was acknowledged: the journal forgets it. */
    virtual void acknowledged(quint64 id) noexcept = 0;
    /* The message \a id went back to the queue (its consumer failed or stopped, or it was taken
       and not delivered); \a failures is its failure count now. */
    virtual void requeued(quint64 id, quint32 failures) noexcept = 0;
    /* The message \a id was dropped by a policy (stage::connect()'s DropOldest): forget it. */
    virtual void dropped(quint64 id) noexcept = 0;
    /* The message \a id became a dead letter, with its final \a reason (called once the reason
       is known, which may be a turn of an event loop after the failure). */
    virtual void deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept = 0;
    /* The dead letters \a ids were taken by the application or dropped beyond the limit. */
    virtual void deadLettersRemoved(const std::vector<quint64> &ids) noexcept = 0;
    /* The mailbox was closed (close() refuses further sends; this is the process's own state, not
       recorded). Default: nothing. */
    virtual void mailboxClosed() noexcept {}

    /* The ticket of the latest append(), 0 if none. Any thread. */
    virtual quint64 lastTicket() const noexcept = 0;
    /* Any thread: arranges for \a waiter, which the mailbox has claimed already, to be
       published once every append up to \a ticket is durable: publish(Waiter::Outcome::Value);
       or, if the journal failed to make them durable, publishError() with a stage::JournalError.
       Exactly one of the two, exactly once (also when the journal is destroyed first: then the
       error). The journal takes a reference (Waiter::ref()) while it keeps the waiter and drops
       it (deref()) after publishing. May publish within the call when the ticket is durable
       already (publish() only posts the resumption; it never runs it inside the call). */
    virtual void whenDurable(quint64 ticket, Waiter *waiter) = 0;
    /* Blocks the calling thread until every append up to \a ticket is durable (true) or until
       \a deadline (false). Throws stage::JournalError if the journal failed to make them
       durable. */
    virtual bool waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline) = 0;
};

/* The typed side: how a T becomes the journal's bytes. */
template<typename T>
class Journal : public JournalBase
{
public:
    /* Any thread, no lock held: the bytes append() will take for \a value. Throws (a
       stage::JournalError naming the reason) if \a value cannot be recorded, for instance because
       it is larger than the journal's limit; the send then fails and nothing was queued. */
    virtual QByteArray encode(const T &value) = 0;
};

} // namespace detail
} // namespace stage
