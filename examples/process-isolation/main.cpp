// Crash isolation: a "library" that segfaults on some inputs runs in child processes
// (stage::ProcessGroup), so the app carries on. The poison inputs end among the dead letters with
// the reason ("killed by signal 11"); every other input is processed, and answered.
//
// The children are this program run again: main() hands them to stage::runChildProcess() first.
#include <stage/processgroup.h>
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QTimer>

#include <csignal>
#include <cstdio>

namespace {

// The third-party library: it crashes the process on any multiple of 13.
int fragileSquare(int x)
{
    if (x % 13 == 0)
        std::raise(SIGSEGV);
    return x * x;
}

} // namespace

int main(int argc, char **argv)
{
    stage::registerProcessEntry<int>(QStringLiteral("square"), [](const int &x) { return fragileSquare(x); });
    if (auto code = stage::runChildProcess(argc, argv)) // a child: runs "square" until told to stop
        return *code;

    QCoreApplication app(argc, argv);
    stage::Mailbox<stage::Request<int, int>> requests;
    requests.setMaxRedeliveries(1); // a crash is retried once, then the input is a dead letter

    std::vector<stage::ReplyReceiver<int>> answers;
    for (int x = 1; x <= 40; ++x) {
        auto [request, answer] = stage::makeRequest<int>(x);
        requests.trySend(std::move(request));
        answers.push_back(std::move(answer));
    }

    stage::ProcessGroup squarers;       // a stage::Group whose workers are processes
    squarers.setSize(2);                // maxInFlight 1 (the default): a crash takes one input with it
    squarers.setBackoff(stage::Backoff::none());
    squarers.spawn(QStringLiteral("square"), requests);

    int answered = 0, failed = 0;
    long long sum = 0;
    for (int x = 1; x <= 40; ++x) {
        try {
            sum += stage::waitFor(answers[size_t(x - 1)].wait(std::chrono::seconds(20)));
            ++answered;
        } catch (const stage::DeadLettered &e) {
            std::printf("%d: %s\n", x, e.what());
            ++failed;
        }
    }
    std::printf("answered %d, dead-lettered %d, crashes survived %lld, sum %lld\n", answered, failed,
                squarers.failed(), sum);
    // 1..40 without 13, 26, 39: sum of squares 22140 - (169 + 676 + 1521) = 19774
    const bool ok = answered == 37 && failed == 3 && sum == 19774 && requests.deadLetterCount() == 3;
    return ok ? 0 : 1;
}
