#pragma once

#include <stage/global.h>
#include <stage/node.h>

#include <QtCore/QAbstractItemModel>
#include <QtCore/QList>

#include <memory>

namespace stage {

class SupervisionTreeModelPrivate;

/*!
    A QAbstractItemModel over live supervision trees: one row per node (a stage::Supervisor's
    rows are its children, in start order), for a QtWidgets QTreeView and a QML TreeView alike.
    QtCore only: it lives in Stage::Core.

    \code
    stage::Supervisor root;                  // with its groups and supervisors, as usual
    stage::SupervisionTreeModel model;
    model.setRoot(&root);                    // or addRoot() for several top-level rows
    QTreeView view;                          // QtWidgets
    view.setModel(&model);                   // a column per Column, DisplayRole text
    \endcode

    Structure is exact and immediate: a child added to or removed from a shown supervisor
    (Supervisor::childAdded(), childRemoved()) and a node destroyed are inserted or removed
    through beginInsertRows()/beginRemoveRows() as soon as Stage announces them; a supervisor
    added with children appears with its whole subtree. The rows of a supervisor follow
    Supervisor::childNodes(). A node shown as a root that joins a shown supervisor moves under
    it (and leaves roots()); a node removed from its supervisor leaves the model. Bad input (a
    null root, a node already shown, a node of another thread) is refused with a warning under
    stage.model and changes nothing.

    Status is coalesced: the model does not listen to the nodes' stateChanged() or
    statisticsChanged(). Every flushInterval() ms (default 100) it polls each node (state,
    reason, counters, restart budget, mailbox depth) against what it last reported and emits,
    for what changed, one dataChanged() per contiguous run of siblings, over every column, with
    the explicit list of the roles that changed (the union over the run). Status never causes
    modelReset() or layoutChanged(). A change that is undone between two flushes is not
    reported; the last value always is, within flushInterval() ms. Exceptions: a name is told by
    objectNameChanged() and reported at the next flush; RecentRestartsRole/RestartBudgetRole of
    a node whose maxRestarts() is above 64 (reading its window costs a read per restart in it)
    are read at once when the node starts restarting, then at most once a second while it goes
    on. data() returns what the last flush saw (a row inserted is read when it is inserted), so a
    view shows only values it was told of; HistoryRole, UptimeRole, LastExitReasonRole and
    DeadLetterReasonsRole are read from the node when asked and kept until a flush sees that
    node change. Uptime advances in steps: every second, the running nodes' rows get a
    dataChanged() for UptimeRole (and DisplayRole).

    Cost: nothing is polled and no timer runs while nothing is connected to dataChanged() (no
    view): the timer starts with the first connection and stops at its first tick after the
    last one is gone. Structure is still tracked (two connections per node, four per
    supervisor, none of them on a restart's path). With a view, a flush reads each node's
    counters: about 0.3 to 0.5 ms of the GUI thread for 1,000 groups that all restart between two
    flushes (3 to 5 ms a second at the default interval; benchmark R1, where restart throughput
    with the model attached is within the noise of that without), plus the slots of what it
    emits. index() and parent() are O(1); a structural change costs O(siblings). flush() polls
    and emits at once, view or not (for tests and screenshots).
    Roles (each readable in every column; QML names in roleNames() in parentheses):
    \list
    \li NodeRole (node): the stage::Node *.
    \li NameRole (name): QObject::objectName().
    \li KindRole (kind): "Supervisor", "Group", "Actor", "ProcessGroup" (a class may name its kind
        with Q_CLASSINFO("StageKind", ...); its subclasses inherit it), or the class name of
        another node kind.
    \li StateRole (state): Node::State as an int; StateTextRole (stateText): its name ("Running").
    \li StateReasonRole (stateReason): Node::stateReason().
    \li StrategyRole (strategy): a supervisor's strategy ("OneForOne", "OneForAll",
        "RestForOne"); empty for a group.
    \li SizeRole (size): Group::size(), or Supervisor::childCount().
    \li RunningRole (running): Group::running() (workers alive), or
        Supervisor::runningChildren().
    \li StartedRole (started), FailedRole (failed), RestartsRole (restarts): a group's
        GroupStatistics started, failed and restarted; a supervisor's SupervisorStatistics
        childrenRestarted, childFailures and restarts. A supervised group's restarts are its
        supervisor's (its own restarts count stays 0 unless it has a maxRestarts() of its own).
    \li RecentRestartsRole (recentRestarts), MaxRestartsRole (maxRestarts): recentRestarts() and
        maxRestarts() of the group or supervisor.
    \li RestartBudgetRole (restartBudget): recentRestarts / maxRestarts as a double (0 is unused,
        1 is exhausted, more is exceeded; with maxRestarts 0: 0 or 1), or -1 when unlimited.
    \li UptimeRole (uptime): ms since the node last entered Starting or Running from a state that
        was not Starting, Running or Restarting, per history(); 0 when it is not running. With a
        history that no longer holds that transition: at least the age of its oldest event.
    \li LastExitReasonRole (lastExitReason): the reason of the node's last Stopped, Failed or
        Restarting transition in history() (stateReason() when the history keeps none).
    \li HistoryRole (history): Node::history() as a QVariantList of QVariantMap {timestamp (ms
        since the epoch), state (int), stateText, reason}, oldest first.
    \li HasMailboxRole (hasMailbox): Group::mailbox() is set; MailboxDepthRole (mailboxDepth):
        its count(); DeadLettersRole (deadLetters): its deadLetterCount();
        DeadLetterReasonsRole (deadLetterReasons): its deadLetterReasons() (0 and empty without
        a mailbox).
    \li RestartSparklineRole (restartSparkline): a QVariantList of 12 ints, the RestartsRole
        increments in each 5 s of the last minute, oldest first. Counted by the flushes: time
        without flushes (no view) is lost, a gap over 5 s counts nothing.
    \li ChildCountRole (childCount): the node's rows in this model.
    \endlist
    DisplayRole, per Column: the name (the kind if unnamed), the state's name, the restarts,
    the budget ("2/5", "unlimited"), the uptime ("12 s", "3 min 4 s", empty when not running),
    the mailbox ("depth 3, dead 1", empty without one), the last exit reason.
*/
class STAGE_EXPORT SupervisionTreeModel : public QAbstractItemModel
{
    Q_OBJECT
    Q_PROPERTY(stage::Node *root READ root WRITE setRoot NOTIFY rootChanged)
    Q_PROPERTY(int flushInterval READ flushInterval WRITE setFlushInterval NOTIFY flushIntervalChanged)

public:
    /*!
        The item data roles; roleNames() gives each its QML name: the role name without "Role", first letter
        in lower case (NodeRole is "node", StateTextRole "stateText"), as listed in the class description.
    */
    enum Role {
        NodeRole = Qt::UserRole + 1,
        NameRole,
        KindRole,
        StateRole,
        StateTextRole,
        StateReasonRole,
        StrategyRole,
        SizeRole,
        RunningRole,
        StartedRole,
        FailedRole,
        RestartsRole,
        RecentRestartsRole,
        MaxRestartsRole,
        RestartBudgetRole,
        UptimeRole,
        LastExitReasonRole,
        HistoryRole,
        HasMailboxRole,
        MailboxDepthRole,
        DeadLettersRole,
        DeadLetterReasonsRole,
        RestartSparklineRole,
        ChildCountRole,
    };
    Q_ENUM(Role)

    /*!
        The columns for a QTreeView, each showing its DisplayRole text (see the class description);
        ColumnCount is their number.
    */
    enum Column { NameColumn, StateColumn, RestartsColumn, BudgetColumn, UptimeColumn, MailboxColumn, LastExitColumn, ColumnCount };
    Q_ENUM(Column)

    /*!
        Creates an empty model (no root). Thread: the model and the nodes it shows must live on the same
        thread.
    */
    explicit SupervisionTreeModel(QObject *parent = nullptr);
    ~SupervisionTreeModel() override;

    /*! The first root, or nullptr when there is none. */
    Node *root() const;
    /*! Shows \a root (with its subtree) as the only top-level row; nullptr shows nothing. */
    void setRoot(Node *root);
    /*!
        Adds \a root and its subtree as the last top-level row. Refused with a warning (nothing
        changes) for a null node, a node already shown (as a root or inside a shown tree), or a
        node living on another thread than the model.
    */
    void addRoot(Node *root);
    /*! Removes the top-level row of \a root; a warning if it is not a root of this model. */
    void removeRoot(Node *root);
    /*! The nodes shown as top-level rows, in row order. */
    QList<Node *> roots() const;

    /*! The node of \a index (any column), or nullptr for an invalid index or a destroyed node. */
    Q_INVOKABLE stage::Node *nodeAt(const QModelIndex &index) const;
    /*! The index of \a node in \a column, or an invalid index if the model does not show it. */
    Q_INVOKABLE QModelIndex indexOf(stage::Node *node, int column = 0) const;

    /*!
        Milliseconds between two automatic flushes (default 100). 0: no automatic flush, only
        flush() emits status changes. Negative: refused with a warning.
    */
    int flushInterval() const;
    /*! Sets flushInterval() to \a milliseconds (>= 0). */
    void setFlushInterval(int milliseconds);

    /*!
        Polls every node now and emits the pending dataChanged() signals before returning, with
        or without a view. Called from a slot of one of those signals, it does nothing (the flush
        in progress goes on); called while rows are being inserted or removed (a slot of
        rowsInserted(), ...), it runs right after that change.
    */
    Q_INVOKABLE void flush();

    //! @name QAbstractItemModel interface
    //! @{
    /*!
        Reimplemented from QAbstractItemModel: the rows are the nodes (a supervisor's children
        below it), the columns are Column, the data are Role. Thread: the model's thread only.
    */
    QModelIndex index(int row, int column, const QModelIndex &parent = QModelIndex()) const override;
    QModelIndex parent(const QModelIndex &child) const override;
    QModelIndex sibling(int row, int column, const QModelIndex &index) const override;
    int rowCount(const QModelIndex &parent = QModelIndex()) const override;
    int columnCount(const QModelIndex &parent = QModelIndex()) const override;
    bool hasChildren(const QModelIndex &parent = QModelIndex()) const override;
    QVariant data(const QModelIndex &index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex &index) const override;
    QHash<int, QByteArray> roleNames() const override;
    //! @}

Q_SIGNALS:
    /*! root() changed to \a root. */
    void rootChanged(stage::Node *root);
    /*! flushInterval() changed to \a milliseconds. */
    void flushIntervalChanged(int milliseconds);

//! \cond internal
protected:
    void timerEvent(QTimerEvent *event) override;
    void connectNotify(const QMetaMethod &signal) override;

//! \endcond
private:
    friend class SupervisionTreeModelPrivate;
    std::unique_ptr<SupervisionTreeModelPrivate> d;
};

} // namespace stage
