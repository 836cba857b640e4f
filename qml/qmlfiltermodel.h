#pragma once

//  Not part of the Stage API: SupervisionFilterModel, the filter of SupervisorView.

#include <stage/supervisiontreemodel.h>

#include <QtCore/QSortFilterProxyModel>
#include <QtQml/qqml.h>

namespace stage::qml {

/*
    A filter over a SupervisionTreeModel for a QML TreeView: one column (the roles carry
    everything), the rows whose name contains filterText (case-insensitive) and whose state is
    stateFilter (-1: any), with their ancestors (so a match stays in its place in the tree).
    Thread: the GUI thread, as its source model.
*/
class QmlSupervisionFilterModel : public QSortFilterProxyModel
{
    Q_OBJECT
    QML_NAMED_ELEMENT(SupervisionFilterModel)
    /* Shows the nodes whose name contains this text (case-insensitive), with their ancestors; empty: all. */
    Q_PROPERTY(QString filterText READ filterText WRITE setFilterText NOTIFY filterTextChanged)
    /* Shows the nodes in this state (a Node.State value), with their ancestors; -1 (default): any. */
    Q_PROPERTY(int stateFilter READ stateFilter WRITE setStateFilter NOTIFY stateFilterChanged)

public:
    explicit QmlSupervisionFilterModel(QObject *parent = nullptr);

    QString filterText() const { return m_text; }
    void setFilterText(const QString &text);
    int stateFilter() const { return m_state; }
    void setStateFilter(int state);

    /* The node of \a index (an index of this model), or null. */
    Q_INVOKABLE stage::Node *nodeAt(const QModelIndex &index) const;
    /* The index of \a node in this model (column 0), or an invalid index. */
    Q_INVOKABLE QModelIndex indexOf(stage::Node *node) const;
    /* The data of \a role (a SupervisionTreeModel role) at \a index. */
    Q_INVOKABLE QVariant roleData(const QModelIndex &index, int role) const;

Q_SIGNALS:
    /* Notifications of filterText and stateFilter. */
    void filterTextChanged();
    void stateFilterChanged();

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex &sourceParent) const override;
    bool filterAcceptsColumn(int sourceColumn, const QModelIndex &sourceParent) const override;

private:
    QString m_text;
    int m_state = -1;
};

} // namespace stage::qml
