// Tests of the variant form of an actor's Q_GADGET messages (stage/actor.h: what QML's
// Stage.ask() and Stage.tell() use, kept in core without QtQml): registerActor() records one entry
// per Q_GADGET message; an entry builds the message from a QVariantMap (every field given, no other,
// each of a type that converts without loss) and answers with the reply as a QVariant; bad fields
// are refused with the field named, and nothing is sent.

#include <stage/actor.h>

#include <QtCore/QFuture>
#include <QtTest/QTest>

#include <cmath>
#include <limits>
#include <stdexcept>

using namespace std::chrono_literals;

struct Add
{
    Q_GADGET
    Q_PROPERTY(int a MEMBER a)
    Q_PROPERTY(int b MEMBER b)
public:
    int a = 0;
    int b = 0;
};

struct Pair
{
    Q_GADGET
    Q_PROPERTY(int first MEMBER first)
    Q_PROPERTY(QString second MEMBER second)
public:
    int first = 0;
    QString second;
};

struct Swap
{
    Q_GADGET
    Q_PROPERTY(QString first MEMBER first)
    Q_PROPERTY(int second MEMBER second)
public:
    QString first;
    int second = 0;
};

struct Reset
{
    Q_GADGET
};

struct Poison
{
    Q_GADGET
};

/* One field of each kind the conversion rules treat apart; `shown` is read-only: not a field. */
struct Kinds
{
    Q_GADGET
    Q_PROPERTY(qint64 big MEMBER big)
    Q_PROPERTY(double ratio MEMBER ratio)
    Q_PROPERTY(QString name MEMBER name)
    Q_PROPERTY(bool flag MEMBER flag)
    Q_PROPERTY(uchar small MEMBER small)
    Q_PROPERTY(QString shown READ shown)
public:
    QString shown() const { return name + QString::number(big); }
    qint64 big = 0;
    double ratio = 0;
    QString name;
    bool flag = false;
    uchar small = 0;
};

struct Plain // not a gadget: C++ only
{
    int x = 0;
};

using Calc = stage::Protocol<int(Add), Pair(Swap), void(Reset), int(Poison), QString(Kinds), int(Plain)>;

namespace {

const stage::detail::ActorVariantMessage *entry(const stage::detail::RegisteredActor &actor, const QString &type)
{
    if (!actor.messages)
        return nullptr;
    for (const auto &message : *actor.messages) {
        if (message.type == type)
            return &message;
    }
    return nullptr;
}

QVariantMap kinds()
{
    return {{QStringLiteral("big"), 5},
            {QStringLiteral("ratio"), 2},
            {QStringLiteral("name"), QStringLiteral("n")},
            {QStringLiteral("flag"), true},
            {QStringLiteral("small"), 7}};
}

QString kindOf(const std::exception_ptr &error, QString *what)
{
    try {
        std::rethrow_exception(error);
    } catch (const stage::DeadLettered &e) {
        *what = QString::fromUtf8(e.what());
        return QStringLiteral("dead-lettered");
    } catch (const stage::TimeoutError &e) {
        *what = QString::fromUtf8(e.what());
        return QStringLiteral("timeout");
    } catch (const std::exception &e) {
        *what = QString::fromUtf8(e.what());
        return QStringLiteral("other");
    }
}

} // namespace

class tst_ActorQml : public QObject
{
    Q_OBJECT

    void spawnCalc(stage::Actor<Calc> &actor)
    {
        actor.setObjectName(QStringLiteral("calc"));
        actor.setBackoff(stage::Backoff::none());
        actor.setMaxRedeliveries(1);
        actor.spawn([] { return 0; }, [](int &, const Add &m) { return m.a + m.b; },
                    [](int &, const Swap &m) { return Pair{m.second, m.first}; }, [](int &total, const Reset &) { total = 0; },
                    [](int &, const Poison &) -> int { throw std::runtime_error("poisoned"); },
                    [](int &, const Kinds &m) { return m.shown(); }, [](int &, const Plain &m) { return m.x; });
    }

private Q_SLOTS:
    void registerActor_recordsTheGadgetMessagesOnly()
    {
        stage::Actor<Calc> actor;
        QVERIFY(stage::registerActor(QStringLiteral("tst_actorqml.calc"), actor.ref()));
        const stage::detail::RegisteredActor registered = stage::detail::registeredActorImpl(QStringLiteral("tst_actorqml.calc"));
        QVERIFY(registered.messages);
        QStringList types;
        for (const auto &message : *registered.messages)
            types.append(message.type);
        QCOMPARE(types, QStringList({"Add", "Swap", "Reset", "Poison", "Kinds"})); // protocol order; not Plain
        QCOMPARE(stage::detail::gadgetFields(*entry(registered, QStringLiteral("Kinds"))->metaObject),
                 QStringList({"big", "ratio", "name", "flag", "small"})); // `shown` is read-only
        QCOMPARE(stage::detail::gadgetFields(Reset::staticMetaObject), QStringList());
        QVERIFY(stage::unregisterActor(QStringLiteral("tst_actorqml.calc")));
    }

    void readGadgetFields_data()
    {
        QTest::addColumn<QVariantMap>("fields");
        QTest::addColumn<QString>("error"); // empty: accepted

        const QString all = QStringLiteral(" (fields: big, ratio, name, flag, small)");
        QTest::newRow("every field") << kinds() << QString();
        QVariantMap m = kinds();
        m[QStringLiteral("big")] = 3.0; // an integral double: fine for an integer
        m[QStringLiteral("ratio")] = 0.25;
        QTest::newRow("integral double for qint64") << m << QString();
        m = kinds();
        m.remove(QStringLiteral("flag"));
        QTest::newRow("missing") << m << QStringLiteral("Kinds needs the field \"flag\"") + all;
        m = kinds();
        m[QStringLiteral("zzz")] = 1;
        QTest::newRow("unknown") << m << QStringLiteral("Kinds has no field \"zzz\"") + all;
        m = kinds();
        m[QStringLiteral("shown")] = QStringLiteral("x");
        QTest::newRow("read-only") << m << QStringLiteral("Kinds has no field \"shown\"") + all;
        m = kinds();
        m[QStringLiteral("big")] = QStringLiteral("5");
        QTest::newRow("string for integer") << m << QStringLiteral("Kinds.big (qlonglong) cannot take a QString");
        m = kinds();
        m[QStringLiteral("name")] = 5;
        QTest::newRow("number for string") << m << QStringLiteral("Kinds.name (QString) cannot take a int");
        m = kinds();
        m[QStringLiteral("flag")] = 1;
        QTest::newRow("number for bool") << m << QStringLiteral("Kinds.flag (bool) cannot take a int");
        m = kinds();
        m[QStringLiteral("ratio")] = true;
        QTest::newRow("bool for double") << m << QStringLiteral("Kinds.ratio (double) cannot take a bool");
        m = kinds();
        m[QStringLiteral("big")] = 1.5;
        QTest::newRow("fraction") << m << QStringLiteral("Kinds.big (qlonglong) cannot take 1.5 (not an integer)");
        m = kinds();
        m[QStringLiteral("big")] = std::numeric_limits<double>::infinity();
        QTest::newRow("infinity") << m << QStringLiteral("Kinds.big (qlonglong) cannot take inf (not an integer)");
        m = kinds();
        m[QStringLiteral("small")] = 256;
        QTest::newRow("above range") << m << QStringLiteral("Kinds.small (uchar) cannot take 256 (out of range)");
        m = kinds();
        m[QStringLiteral("small")] = -1;
        QTest::newRow("below range") << m << QStringLiteral("Kinds.small (uchar) cannot take -1 (out of range)");
        m = kinds();
        m[QStringLiteral("name")] = QVariant();
        QTest::newRow("undefined") << m << QStringLiteral("Kinds.name (QString) cannot take undefined");
    }

    void readGadgetFields()
    {
        QFETCH(QVariantMap, fields);
        QFETCH(QString, error);
        Kinds kinds;
        QString why;
        const bool ok = stage::detail::readGadgetFields(Kinds::staticMetaObject, &kinds, fields, &why);
        QCOMPARE(why, error);
        QCOMPARE(ok, error.isEmpty());
        if (ok) {
            QCOMPARE(kinds.big, fields.value(QStringLiteral("big")).toLongLong());
            QCOMPARE(kinds.ratio, fields.value(QStringLiteral("ratio")).toDouble());
            QCOMPARE(kinds.name, QStringLiteral("n"));
            QCOMPARE(kinds.flag, true);
            QCOMPARE(kinds.small, uchar(7));
        }
    }

    void ask_answersAsAVariant()
    {
        stage::Actor<Calc> actor;
        spawnCalc(actor);
        QVERIFY(stage::registerActor(QStringLiteral("tst_actorqml.calc"), actor.ref()));
        const auto registered = stage::detail::registeredActorImpl(QStringLiteral("tst_actorqml.calc"));
        QString error;
        QFuture<QVariant> sum, pair, reset, shown;
        QVERIFY(entry(registered, QStringLiteral("Add"))->ask({{"a", 1}, {"b", 2}}, -1ms, &sum, &error));
        QVERIFY(entry(registered, QStringLiteral("Swap"))->ask({{"first", "one"}, {"second", 1}}, 2s, &pair, &error));
        QVERIFY(entry(registered, QStringLiteral("Reset"))->ask({}, -1ms, &reset, &error));
        QVERIFY(entry(registered, QStringLiteral("Kinds"))->ask(kinds(), -1ms, &shown, &error));
        QCOMPARE(error, QString());
        QVERIFY(!sum.isFinished()); // finished from the event loop, never inside the call
        QTRY_VERIFY_WITH_TIMEOUT(sum.isFinished() && pair.isFinished() && reset.isFinished() && shown.isFinished(), 10000);
        QCOMPARE(sum.result(), QVariant(3));
        QCOMPARE(sum.result().metaType(), QMetaType::fromType<int>());
        QCOMPARE(pair.result(), QVariant(QVariantMap({{"first", 1}, {"second", "one"}}))); // a gadget reply: a map
        QVERIFY(!reset.result().isValid());                                                 // void: no value
        QCOMPARE(shown.result(), QVariant(QStringLiteral("n5")));
    }

    void ask_badFields_sendNothing()
    {
        stage::Actor<Calc> actor; // not spawned: whatever is sent stays queued, counted
        QVERIFY(stage::registerActor(QStringLiteral("tst_actorqml.calc"), actor.ref()));
        const auto registered = stage::detail::registeredActorImpl(QStringLiteral("tst_actorqml.calc"));
        const auto *add = entry(registered, QStringLiteral("Add"));
        QString error;
        QFuture<QVariant> answer;
        QVERIFY(!add->ask({{"a", 1}}, -1ms, &answer, &error));
        QCOMPARE(error, QStringLiteral("Add needs the field \"b\" (fields: a, b)"));
        QVERIFY(!add->ask({{"a", 1}, {"b", "x"}}, -1ms, &answer, &error));
        QCOMPARE(error, QStringLiteral("Add.b (int) cannot take a QString"));
        stage::SendStatus status = stage::SendStatus::Sent;
        QVERIFY(!add->tell({{"a", 1}, {"b", 2}, {"c", 3}}, &status, &error));
        QCOMPARE(error, QStringLiteral("Add has no field \"c\" (fields: a, b)"));
        QCOMPARE(actor.ref().count(), 0);
        QVERIFY(add->tell({{"a", 1}, {"b", 2}}, &status, &error));
        QCOMPARE(status, stage::SendStatus::Sent);
        QCOMPARE(actor.ref().count(), 1);
    }

    void ask_failuresKeepTheirType()
    {
        stage::Actor<Calc> actor;
        spawnCalc(actor);
        QVERIFY(stage::registerActor(QStringLiteral("tst_actorqml.calc"), actor.ref()));
        const auto registered = stage::detail::registeredActorImpl(QStringLiteral("tst_actorqml.calc"));
        QString error;
        QFuture<QVariant> poisoned, late;
        QVERIFY(entry(registered, QStringLiteral("Poison"))->ask({}, -1ms, &poisoned, &error));
        QTRY_VERIFY_WITH_TIMEOUT(poisoned.isFinished(), 10000);
        QString what;
        QCOMPARE(kindOf(stage::detail::errorOf(poisoned), &what), QStringLiteral("dead-lettered"));
        QCOMPARE(what, QStringLiteral("dead-lettered after 2 failed deliveries: poisoned"));
        QCOMPARE(actor.failed(), qint64(2));

        stage::Actor<Calc> idle; // never spawned: the ask times out, naming the actor and the message
        idle.setObjectName(QStringLiteral("idle"));
        QVERIFY(stage::registerActor(QStringLiteral("tst_actorqml.idle"), idle.ref()));
        const auto idleEntry = stage::detail::registeredActorImpl(QStringLiteral("tst_actorqml.idle"));
        QVERIFY(entry(idleEntry, QStringLiteral("Add"))->ask({{"a", 1}, {"b", 2}}, 30ms, &late, &error));
        QTRY_VERIFY_WITH_TIMEOUT(late.isFinished(), 10000);
        QCOMPARE(kindOf(stage::detail::errorOf(late), &what), QStringLiteral("timeout"));
        QCOMPARE(what, QStringLiteral("stage::Actor: actor 'idle' did not answer Add within 30 ms"));
    }

    void tell_reportsTheStatus()
    {
        auto *actor = new stage::Actor<Calc>(1); // bounded (1), not spawned
        QVERIFY(stage::registerActor(QStringLiteral("tst_actorqml.bounded"), actor->ref()));
        const auto registered = stage::detail::registeredActorImpl(QStringLiteral("tst_actorqml.bounded"));
        const auto *add = entry(registered, QStringLiteral("Add"));
        stage::SendStatus status = stage::SendStatus::Closed;
        QString error;
        QVERIFY(add->tell({{"a", 1}, {"b", 2}}, &status, &error));
        QCOMPARE(status, stage::SendStatus::Sent);
        QVERIFY(add->tell({{"a", 1}, {"b", 2}}, &status, &error));
        QCOMPARE(status, stage::SendStatus::Full);
        delete actor; // the entry goes from the registry; a copy held meanwhile tells into a closed mailbox
        QVERIFY(!stage::detail::registeredActorImpl(QStringLiteral("tst_actorqml.bounded")).ref);
        QVERIFY(add->tell({{"a", 1}, {"b", 2}}, &status, &error));
        QCOMPARE(status, stage::SendStatus::Closed);
    }
};

QTEST_GUILESS_MAIN(tst_ActorQml)
#include "tst_actorqml.moc"
