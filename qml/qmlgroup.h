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
    /*
        The default property: objects declared inside (timers, connections); a node declared inside a Group
        is refused (a Group has no children): it is Failed, with a warning.
    */
    Q_PROPERTY(QQmlListProperty<QObject> data READ data)
    /*
        The name of the worker body registered from C++ with stage::registerWorker(); required. Unknown or
        empty: a warning naming the registered ones, and the group is Failed.
    */
    Q_PROPERTY(QString worker READ worker WRITE setWorker NOTIFY workerChanged)
    /* Passed to a body registered as (Worker &, const QVariantMap &) at every start and restart. */
    Q_PROPERTY(QVariantMap arguments READ arguments WRITE setArguments NOTIFY argumentsChanged)
    /*
        On a root: true starts the group once the declaration is complete (and again after a shutdown),
        false shuts it down. On a supervised node it is ignored with a warning. Reads true while Starting,
        Running or Restarting.
    */
    Q_PROPERTY(bool running READ isRunning WRITE setRunning NOTIFY runningChanged)
    /* stage::Group::size() (default 1); negative is a warning with the file and line, and ignored. */
    Q_PROPERTY(int size READ size WRITE setQmlSize NOTIFY settingsChanged)
    /*
        stage::Group::threadCount(): 0 (default) runs the workers on the GUI thread, N on N threads of the
        group's own; negative is a warning, and ignored.
    */
    Q_PROPERTY(int threadCount READ threadCount WRITE setQmlThreadCount NOTIFY settingsChanged)
    /*
        stage::Group::maxRestarts() (default -1: unlimited alone, 0 under a supervisor); below -1 is a
        warning, and ignored.
    */
    Q_PROPERTY(int maxRestarts READ maxRestarts WRITE setQmlMaxRestarts NOTIFY settingsChanged)
    /* stage::Group::restartPeriod() in ms (default 5000); below 1 is a warning, and ignored. */
    Q_PROPERTY(int restartPeriod READ restartPeriod WRITE setQmlRestartPeriod NOTIFY settingsChanged)
    /* stage::Group::shutdownTimeout() in ms (default 5000); negative is a warning, and ignored. */
    Q_PROPERTY(int shutdownTimeout READ shutdownTimeout WRITE setQmlShutdownTimeout NOTIFY settingsChanged)
    /*
        stage::Group::heartbeatTimeout() in ms (default 0: no watchdog); negative is a warning, and ignored.
    */
    Q_PROPERTY(int heartbeatTimeout READ heartbeatTimeout WRITE setQmlHeartbeatTimeout NOTIFY settingsChanged)
    /* Node::history() as an array of { timestamp, time, state, stateText, reason }, oldest first. */
    Q_PROPERTY(QVariantList history READ historyList NOTIFY runningChanged)
    /* The state's name: "Idle", "Starting", "Running", "Restarting", "Stopping", "Stopped" or "Failed". */
    Q_PROPERTY(QString stateText READ stateText NOTIFY runningChanged)
    /*
        stage::Group::statistics(), a groupStatistics value (running, started, completed, failed, cancelled,
        abandoned, restarted, iterations).
    */
    Q_PROPERTY(stage::GroupStatistics statistics READ statistics NOTIFY statisticsChanged)
    /* Restarts within the last restartPeriod (none are counted while maxRestarts is -1). */
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
