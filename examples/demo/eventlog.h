#pragma once
// The live event log: newest first, at most 300 entries. GUI thread only.

#include <QtCore/QAbstractListModel>
#include <QtCore/QElapsedTimer>
#include <QtQml/qqmlregistration.h>

#include <deque>

class EventLog : public QAbstractListModel
{
    Q_OBJECT
    QML_ELEMENT
    QML_UNCREATABLE("the demo's DemoController.eventLog")
    Q_PROPERTY(int count READ rowCount NOTIFY countChanged)
    Q_PROPERTY(qint64 total READ total NOTIFY countChanged) // every entry ever added

public:
    enum Role { TimeRole = Qt::UserRole + 1, NodeRole, KindRole, TextRole };

    explicit EventLog(QObject *parent = nullptr) : QAbstractListModel(parent) { m_clock.start(); }

    /* \a kind: "fault", "failure", "state", "escalation", "recovery", "dead-letter", "info". */
    void add(const QString &node, const QString &kind, const QString &text)
    {
        beginInsertRows({}, 0, 0);
        m_entries.push_front(Entry{m_clock.elapsed(), node, kind, text});
        endInsertRows();
        if (int(m_entries.size()) > limit) {
            beginRemoveRows({}, limit, int(m_entries.size()) - 1);
            m_entries.resize(limit);
            endRemoveRows();
        }
        ++m_total;
        emit countChanged();
    }
    qint64 total() const { return m_total; }
    qint64 elapsed() const { return m_clock.elapsed(); }

    int rowCount(const QModelIndex &parent = {}) const override { return parent.isValid() ? 0 : int(m_entries.size()); }
    QVariant data(const QModelIndex &index, int role) const override
    {
        if (!index.isValid() || index.row() >= int(m_entries.size()))
            return {};
        const Entry &e = m_entries[size_t(index.row())];
        switch (role) {
        case TimeRole:
            return QString::number(double(e.ms) / 1000.0, 'f', 1);
        case NodeRole:
            return e.node;
        case KindRole:
            return e.kind;
        case Qt::DisplayRole:
        case TextRole:
            return e.text;
        }
        return {};
    }
    QHash<int, QByteArray> roleNames() const override
    {
        return {{TimeRole, "time"}, {NodeRole, "node"}, {KindRole, "kind"}, {TextRole, "text"}};
    }

    static constexpr int limit = 300;

Q_SIGNALS:
    void countChanged();

private:
    struct Entry
    {
        qint64 ms;
        QString node, kind, text;
    };
    std::deque<Entry> m_entries;
    QElapsedTimer m_clock;
    qint64 m_total = 0;
};
