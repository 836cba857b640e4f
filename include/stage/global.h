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

namespace stage {

/*! Log category of the coroutine runtime (workers, awaitables): \c stage.worker. */
STAGE_EXPORT const QLoggingCategory &lcWorker();
/*! Log category of mailboxes and replies: \c stage.mailbox. */
STAGE_EXPORT const QLoggingCategory &lcMailbox();

} // namespace stage
