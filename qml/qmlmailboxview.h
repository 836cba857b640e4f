#pragma once

//  Not part of the Stage API: the QML type MailboxView of the Stage module.

#include <stage/mailbox.h>

#include <QtCore/QPointer>
#include <QtCore/QStringList>
#include <QtQml/qqml.h>

namespace stage::qml {

/*
    A read-only view of a mailbox a C++ side exposes: set \c mailbox (a Mailbox object, e.g.
    Stage.mailbox("paths")) or \c name (looked up among stage::registerMailbox()'s names).
    Every property is read-only and notifies; \c valid is false while no mailbox is found (or
    after it was destroyed). Thread: the GUI thread; the mailbox's QObject side must live there.
*/
class QmlMailboxView : public QObject
{
    Q_OBJECT
    QML_NAMED_ELEMENT(MailboxView)
    Q_PROPERTY(stage::MailboxBase *mailbox READ mailbox WRITE setMailbox NOTIFY mailboxChanged)
    Q_PROPERTY(QString name READ name WRITE setName NOTIFY nameChanged)
    Q_PROPERTY(bool valid READ isValid NOTIFY mailboxChanged)
    Q_PROPERTY(int count READ count NOTIFY changed)
    Q_PROPERTY(int capacity READ capacity NOTIFY mailboxChanged)
    Q_PROPERTY(bool closed READ isClosed NOTIFY changed)
    Q_PROPERTY(int maxRedeliveries READ maxRedeliveries NOTIFY changed)
    Q_PROPERTY(stage::MailboxStatistics statistics READ statistics NOTIFY changed)
    Q_PROPERTY(int deadLetterCount READ deadLetterCount NOTIFY changed)
    Q_PROPERTY(QStringList deadLetters READ deadLetters NOTIFY changed)

public:
    explicit QmlMailboxView(QObject *parent = nullptr);

    MailboxBase *mailbox() const { return m_mailbox.data(); }
    void setMailbox(MailboxBase *mailbox);
    QString name() const { return m_name; }
    void setName(const QString &name);
    bool isValid() const { return !m_mailbox.isNull(); }
    int count() const { return m_mailbox ? m_mailbox->count() : 0; }
    int capacity() const { return m_mailbox ? m_mailbox->capacity() : 0; }
    bool isClosed() const { return m_mailbox ? m_mailbox->isClosed() : false; }
    int maxRedeliveries() const { return m_mailbox ? m_mailbox->maxRedeliveries() : 0; }
    MailboxStatistics statistics() const { return m_mailbox ? m_mailbox->statistics() : MailboxStatistics(); }
    int deadLetterCount() const { return m_mailbox ? m_mailbox->deadLetterCount() : 0; }
    /* The reasons of the dead letters kept, oldest first. */
    QStringList deadLetters() const { return m_mailbox ? m_mailbox->deadLetterReasons() : QStringList(); }

Q_SIGNALS:
    void mailboxChanged();
    void nameChanged();
    void changed();

private:
    void attach(MailboxBase *mailbox);

    QPointer<MailboxBase> m_mailbox;
    QString m_name;
    QList<QMetaObject::Connection> m_connections;
};

} // namespace stage::qml
