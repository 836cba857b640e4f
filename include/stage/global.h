#pragma once

#include <QtCore/qglobal.h>
#include <QtCore/QLoggingCategory>

#if defined(STAGE_STATIC)
#  define STAGE_EXPORT
#elif defined(STAGE_BUILDING_CORE)
#  define STAGE_EXPORT Q_DECL_EXPORT
#else
#  define STAGE_EXPORT Q_DECL_IMPORT
#endif

/*!
    \namespace stage
    \brief Stage for Qt: restartable, cancellable, supervised C++20 coroutine workers and reliable
    mailboxes for Qt 6 (QCoro 0.8).

    Everything public is in this namespace; \c stage::detail is not API. The headers are one
    concept each (\c <stage/group.h>, \c <stage/mailbox.h>, ...); \c <stage/stage.h> includes
    them all. Each concept logs under a category of its own: \c stage.group, \c stage.mailbox,
    \c stage.supervisor, \c stage.worker, \c stage.node, \c stage.actor, and so on.
*/
namespace stage {

/*! Log category of the coroutine runtime (workers, awaitables): \c stage.worker. */
STAGE_EXPORT const QLoggingCategory &lcWorker();
/*! Log category of mailboxes and replies: \c stage.mailbox. */
STAGE_EXPORT const QLoggingCategory &lcMailbox();

} // namespace stage
