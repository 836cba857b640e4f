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
    /* The mailbox shown (e.g. Stage.mailbox("paths")); null once its QObject side is destroyed. */
    Q_PROPERTY(stage::MailboxBase *mailbox READ mailbox WRITE setMailbox NOTIFY mailboxChanged)
    /*
        A name registered with stage::registerMailbox(): the view shows that mailbox. An unknown name
        is a warning listing the registered ones, and the view shows none (valid is false).
    */
    Q_PROPERTY(QString name READ name WRITE setName NOTIFY nameChanged)
    /* True while a mailbox is shown. */
    Q_PROPERTY(bool valid READ isValid NOTIFY mailboxChanged)
    /* Messages queued now (0 without a mailbox). */
    Q_PROPERTY(int count READ count NOTIFY changed)
    /* The mailbox's capacity (0 without a mailbox). */
    Q_PROPERTY(int capacity READ capacity NOTIFY mailboxChanged)
    /* True once the mailbox is closed. */
    Q_PROPERTY(bool closed READ isClosed NOTIFY changed)
    /* Failures a message may cause before it is dead-lettered. */
    Q_PROPERTY(int maxRedeliveries READ maxRedeliveries NOTIFY changed)
    /*
        The mailbox's counters, a mailboxStatistics value (queued, delivered, acknowledged, redelivered,
        deadLettered, ...).
    */
    Q_PROPERTY(stage::MailboxStatistics statistics READ statistics NOTIFY changed)
    /* Dead letters kept now. */
    Q_PROPERTY(int deadLetterCount READ deadLetterCount NOTIFY changed)
    /* The reasons of the dead letters kept, oldest first. */
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
    /*
        Notifications of the properties: mailbox, valid and capacity; name; the others (coalesced with the
        mailbox's own signals).
    */
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
