#pragma once

#include <QtCore/qglobal.h>

QT_BEGIN_NAMESPACE
class QQmlEngine;
QT_END_NAMESPACE

#if defined(STAGE_BUILDING_QML)
#  define STAGE_QML_EXPORT Q_DECL_EXPORT
#else
#  define STAGE_QML_EXPORT Q_DECL_IMPORT
#endif

namespace stage {

/*!
    Makes `import Stage` work in \a engine: registers the module's types (they are in the
    Stage::Qml library the application links, so no plugin has to be found on disk) and adds
    "qrc:/qt/qml" to the engine's import paths, which Qt 6.4 does not search by default (6.5 does).
    Call it before loading QML that imports Stage. Idempotent. Thread: the engine's thread.
*/
STAGE_QML_EXPORT void initQml(QQmlEngine *engine);

} // namespace stage
