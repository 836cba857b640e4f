// The seed's snippet 2.3: sv1 (one-for-one) { child1, sv2 (one-for-all) { child2 } }. child2 failing
// restarts only sv2's subtree; child1 failing, only child1; child2 failing past sv2's intensity (3
// in 5 s) fails sv2 to sv1, which restarts sv2 whole. Prints the live tree after every step.
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QLoggingCategory>
#include <QtCore/QMetaEnum>
#include <QtCore/QTimer>

#include <cstdio>

using namespace std::chrono_literals;

// A worker that runs until it is told to fail (through its own mailbox).
QCoro::Task<> child(stage::Mailbox<int> commands)
{
    (co_await commands.receive()).ack();
    throw std::runtime_error("told to fail");
}
stage::Group *makeChild(const char *name, stage::Mailbox<int> commands)
{
    auto *group = new stage::Group;
    group->setObjectName(QString::fromLatin1(name));
    group->spawn([commands] { return child(commands); }); // the supervisor starts it
    return group;
}

void print(const stage::Node *node, int depth = 0)
{
    const auto *group = qobject_cast<const stage::Group *>(node);
    std::printf("%*s%-8s %-10s %s\n", depth * 2, "", qPrintable(node->objectName()),
                QMetaEnum::fromType<stage::Node::State>().valueToKey(int(node->state())),
                group ? qPrintable(QStringLiteral("(started %1 times)").arg(group->started())) : "");
    if (const auto *sv = qobject_cast<const stage::Supervisor *>(node))
        for (const stage::Node *c : sv->childNodes())
            print(c, depth + 1);
}

// Spins the event loop until the whole tree runs again.
bool settle(const stage::Supervisor &root, int expectedStarts, const stage::Group *a, const stage::Group *b)
{
    for (int i = 0; i < 1000; ++i) { // 10 s at most
        QEventLoop loop;
        QTimer::singleShot(10, &loop, &QEventLoop::quit);
        loop.exec();
        if (a->started() + b->started() == expectedStarts && a->running() == 1 && b->running() == 1
            && root.state() == stage::Node::State::Running)
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    QLoggingCategory::setFilterRules(QStringLiteral("stage.*=false"));
    stage::Mailbox<int> toChild1, toChild2;

    stage::Supervisor sv1(stage::Supervisor::Strategy::OneForOne);
    sv1.setObjectName(QStringLiteral("sv1"));
    auto *sv2 = new stage::Supervisor(stage::Supervisor::Strategy::OneForAll);
    sv2->setObjectName(QStringLiteral("sv2"));
    auto *child1 = makeChild("child1", toChild1);
    auto *child2 = makeChild("child2", toChild2);
    sv1.addChild(child1);
    sv1.addChild(sv2);
    sv2->addChild(child2);
    sv1.start();

    int starts = 2;
    bool ok = settle(sv1, starts, child1, child2);
    std::printf("started:\n");
    print(&sv1);

    toChild2.trySend(1);
    ok = ok && settle(sv1, ++starts, child1, child2);
    std::printf("\nchild2 failed: sv2 restarted its subtree (sv2 restarts: %lld, sv1 restarts: %lld)\n",
                sv2->restarts(), sv1.restarts());
    print(&sv1);

    toChild1.trySend(1);
    ok = ok && settle(sv1, ++starts, child1, child2);
    std::printf("\nchild1 failed: sv1 restarted child1 only (sv1 restarts: %lld)\n", sv1.restarts());
    print(&sv1);

    for (int i = 0; i < 3; ++i) {
        toChild2.trySend(1);
        ok = ok && settle(sv1, ++starts, child1, child2);
    }
    std::printf("\nchild2 failed 3 more times: sv2 gave up (escalations: %lld), sv1 restarted sv2 (sv1 restarts: %lld)\n",
                sv2->statistics().escalations, sv1.restarts());
    print(&sv1);

    ok = ok && sv2->restarts() == 3 && sv2->statistics().escalations == 1 && sv1.restarts() == 2;
    stage::waitFor(sv1.shutdown(), 5s);
    std::printf("\nshut down:\n");
    print(&sv1);
    return ok ? 0 : 1;
}
