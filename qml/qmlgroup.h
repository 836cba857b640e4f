#pragma once

//  Not part of the Stage API: the QML type Group of the Stage module.

#include "qmlnodesupport.h"

#include <stage/group.h>

#include <QtCore/QPointer>
#include <QtCore/QVariantMap>
#include <QtQml/QQmlListProperty>
#include <QtQml/QQmlParserStatus>
#include <QtQml/qqml.h>

namespace stage::qml {

/*
    Group in QML: a stage::Group whose workers run the body registered from C++ under \c worker
    (stage::registerWorker()), given \c arguments. Resolved once the declaration is complete;
    an unknown or missing worker is a qmlWarning and the group enters Failed.
    Thread: the GUI (QML engine) thread; its workers run there or on its own threads (threadCount).
*/
class QmlGroup : public stage::Group, public QQmlParserStatus
{
    Q_OBJECT
    Q_INTERFACES(QQmlParserStatus)
    QML_NAMED_ELEMENT(Group)
    Q_CLASSINFO("DefaultProperty", "data")
    Q_PROPERTY(QQmlListProperty<QObject> data READ data)
    Q_PROPERTY(QString worker READ worker WRITE setWorker NOTIFY workerChanged)
    Q_PROPERTY(QVariantMap arguments READ arguments WRITE setArguments NOTIFY argumentsChanged)
    Q_PROPERTY(bool running READ isRunning WRITE setRunning NOTIFY runningChanged)
    Q_PROPERTY(int size READ size WRITE setQmlSize NOTIFY settingsChanged)
    Q_PROPERTY(int threadCount READ threadCount WRITE setQmlThreadCount NOTIFY settingsChanged)
    Q_PROPERTY(int maxRestarts READ maxRestarts WRITE setQmlMaxRestarts NOTIFY settingsChanged)
    Q_PROPERTY(int restartPeriod READ restartPeriod WRITE setQmlRestartPeriod NOTIFY settingsChanged)
    Q_PROPERTY(int shutdownTimeout READ shutdownTimeout WRITE setQmlShutdownTimeout NOTIFY settingsChanged)
    Q_PROPERTY(int heartbeatTimeout READ heartbeatTimeout WRITE setQmlHeartbeatTimeout NOTIFY settingsChanged)
    Q_PROPERTY(QVariantList history READ historyList NOTIFY runningChanged)
    Q_PROPERTY(QString stateText READ stateText NOTIFY runningChanged)
    Q_PROPERTY(stage::GroupStatistics statistics READ statistics NOTIFY statisticsChanged)
    Q_PROPERTY(int recentRestarts READ recentRestarts NOTIFY statisticsChanged)

public:
    explicit QmlGroup(QObject *parent = nullptr);
    ~QmlGroup() override;

    QQmlListProperty<QObject> data();
    QString worker() const { return m_worker; }
    void setWorker(const QString &worker);
    QVariantMap arguments() const { return m_arguments; }
    void setArguments(const QVariantMap &arguments);
    void setRunning(bool running);
    void setQmlSize(int size);
    void setQmlThreadCount(int count);
    void setQmlMaxRestarts(int count);
    void setQmlRestartPeriod(int milliseconds);
    void setQmlShutdownTimeout(int milliseconds);
    void setQmlHeartbeatTimeout(int milliseconds);
    QVariantList historyList() const { return support::history(this); }
    QString stateText() const { return support::stateText(state()); }

    /* Node::start(), and first resolves the worker of a root declared without running: true. */
    Q_INVOKABLE bool start();
    /* stop() and restart() are Node's slots (a child goes through its supervisor). */
    /* Stops every worker within shutdownTimeout; a root only (a child: stop()). */
    Q_INVOKABLE void shutdown();

    void classBegin() override;
    void componentComplete() override;

Q_SIGNALS:
    /* Parameterless notifications for the QML properties (moc needs them so). */
    void runningChanged();
    void settingsChanged();
    void workerChanged();
    void argumentsChanged();

private:
    static void appendData(QQmlListProperty<QObject> *list, QObject *object);
    static qsizetype dataCount(QQmlListProperty<QObject> *list);
    static QObject *dataAt(QQmlListProperty<QObject> *list, qsizetype index);
    static void clearData(QQmlListProperty<QObject> *list);
    static void replaceData(QQmlListProperty<QObject> *list, qsizetype index, QObject *object);
    static void removeLastData(QQmlListProperty<QObject> *list);
    void fail(const QString &reason);
    bool resolve();

    QList<QPointer<QObject>> m_data;
    QString m_worker;
    QVariantMap m_arguments;
    bool m_complete = false;
    bool m_wantRunning = false;
    bool m_resolved = false;
};

} // namespace stage::qml
