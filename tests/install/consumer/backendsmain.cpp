// The optional components from the installed package: Stage::Process, Stage::Durable and
// Stage::Redis link and work from the prefix alone (a durable mailbox round trip in a temporary
// file; a Redis connection refused with a clear error for a URL it cannot parse).

#include <stage/durablestore.h>
#include <stage/processgroup.h>
#include <stage/redis.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QTemporaryDir>

#include <cstdio>

int main(int argc, char **argv)
{
    if (auto code = stage::runChildProcess(argc, argv))
        return *code;
    QCoreApplication app(argc, argv);
    QTemporaryDir dir;
    {
        stage::DurableStore store(dir.filePath(QStringLiteral("consumer.stage")));
        if (!store.isOpen()) {
            std::fprintf(stderr, "durable store not open: %s\n", qPrintable(store.errorString()));
            return 1;
        }
        auto box = store.mailbox<int>(QStringLiteral("numbers"));
        if (box.sendBlocking(42) != stage::SendStatus::Sent)
            return 2;
    }
    {
        stage::DurableStore store(dir.filePath(QStringLiteral("consumer.stage")));
        auto box = store.mailbox<int>(QStringLiteral("numbers"));
        auto delivery = box.tryReceive();
        if (!delivery || **delivery != 42) {
            std::fprintf(stderr, "the durable message did not come back\n");
            return 3;
        }
    }
    stage::RedisConnection redis(QStringLiteral("notredis://nowhere"));
    if (redis.state() != stage::RedisConnection::State::Failed || redis.errorString().isEmpty()) {
        std::fprintf(stderr, "a bad Redis URL was not refused: state %d, error '%s'\n", int(redis.state()),
                     qPrintable(redis.errorString()));
        return 4;
    }
    std::puts("backends consumer: durable round trip and Redis URL check passed");
    return 0;
}
