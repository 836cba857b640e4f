#include "qmlfiltermodel.h"

namespace stage::qml {

QmlSupervisionFilterModel::QmlSupervisionFilterModel(QObject *parent) : QSortFilterProxyModel(parent)
{
    setRecursiveFilteringEnabled(true);
    setDynamicSortFilter(true);
}

void QmlSupervisionFilterModel::setFilterText(const QString &text)
{
    if (m_text == text)
        return;
    m_text = text;
    invalidateRowsFilter();
    emit filterTextChanged();
}

void QmlSupervisionFilterModel::setStateFilter(int state)
{
    if (m_state == state)
        return;
    m_state = state;
    invalidateRowsFilter();
    emit stateFilterChanged();
}

Node *QmlSupervisionFilterModel::nodeAt(const QModelIndex &index) const
{
    return qvariant_cast<Node *>(data(index, SupervisionTreeModel::NodeRole));
}

QModelIndex QmlSupervisionFilterModel::indexOf(Node *node) const
{
    auto *source = qobject_cast<SupervisionTreeModel *>(sourceModel());
    return source ? mapFromSource(source->indexOf(node)) : QModelIndex();
}

QVariant QmlSupervisionFilterModel::roleData(const QModelIndex &index, int role) const
{
    return data(index, role);
}

bool QmlSupervisionFilterModel::filterAcceptsRow(int sourceRow, const QModelIndex &sourceParent) const
{
    if (m_text.isEmpty() && m_state < 0)
        return true;
    const QModelIndex index = sourceModel()->index(sourceRow, 0, sourceParent);
    if (!m_text.isEmpty()
        && !index.data(SupervisionTreeModel::NameRole).toString().contains(m_text, Qt::CaseInsensitive))
        return false;
    return m_state < 0 || index.data(SupervisionTreeModel::StateRole).toInt() == m_state;
}

bool QmlSupervisionFilterModel::filterAcceptsColumn(int sourceColumn, const QModelIndex &) const
{
    return sourceColumn == 0;
}

} // namespace stage::qml
