// Uses Stage through the installed package only: a coroutine that sleeps, run by stage::waitFor.
#include <stage/stage.h>

#include <QtCore/QCoreApplication>

#include <chrono>
#include <cstdio>
#include <exception>

static QCoro::Task<int> answer()
{
    co_await stage::sleep(std::chrono::milliseconds(10));
    co_return 42;
}

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    try {
        const int value = stage::waitFor(answer());
        if (value != 42) {
            std::fprintf(stderr, "consumer: expected 42, got %d\n", value);
            return 1;
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "consumer: exception: %s\n", e.what());
        return 1;
    }
    std::puts("consumer: ok (42)");
    return 0;
}
