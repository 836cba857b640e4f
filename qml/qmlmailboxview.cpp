#include "qmlmailboxview.h"

#include <stage/registry.h>

#include <QtQml/QQmlInfo>

namespace stage::qml {

QmlMailboxView::QmlMailboxView(QObject *parent) : QObject(parent) {}

void QmlMailboxView::setMailbox(MailboxBase *mailbox)
{
    if (m_mailbox == mailbox)
        return;
    attach(mailbox);
}

void QmlMailboxView::setName(const QString &name)
{
    if (m_name == name)
        return;
    m_name = name;
    emit nameChanged();
    MailboxBase *box = registeredMailbox(name);
    if (!box && !name.isEmpty())
        qmlWarning(this) << "no mailbox is registered as \"" << name
                         << "\" (stage::registerMailbox(); registered: " << registeredMailboxes().join(QStringLiteral(", "))
                         << ")";
    attach(box);
}

void QmlMailboxView::attach(MailboxBase *mailbox)
{
    for (const auto &connection : std::as_const(m_connections))
        disconnect(connection);
    m_connections.clear();
    m_mailbox = mailbox;
    if (mailbox) {
        m_connections.append(connect(mailbox, &MailboxBase::countChanged, this, &QmlMailboxView::changed));
        m_connections.append(connect(mailbox, &MailboxBase::closedChanged, this, &QmlMailboxView::changed));
        m_connections.append(connect(mailbox, &MailboxBase::statisticsChanged, this, &QmlMailboxView::changed));
        m_connections.append(connect(mailbox, &MailboxBase::maxRedeliveriesChanged, this, &QmlMailboxView::changed));
        m_connections.append(connect(mailbox, &QObject::destroyed, this, [this] {
            m_connections.clear();
            emit mailboxChanged();
            emit changed();
        }));
    }
    emit mailboxChanged();
    emit changed();
}

} // namespace stage::qml
