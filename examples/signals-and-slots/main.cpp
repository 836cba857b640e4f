// Stage from signals and slots: an app without a single coroutine of its own. A QTimer and a
// QFileSystemWatcher feed one mailbox; a controller's slot consumes it and, when the file changed,
// asks a worker (on a thread of its own) for its word count and shows the answer.
#include <stage/stage.h>

#include <QtCore>

using namespace std::chrono_literals;
using WordCount = stage::Request<QString, int>; // a path in, its number of words out

class Controller : public QObject
{
    Q_OBJECT
public:
    explicit Controller(stage::Mailbox<WordCount> counter) : m_counter(counter) {}

public Q_SLOTS:
    void onEvent(const QString &event) // called by stage::consume, one event at a time
    {
        if (event == QLatin1String("tick")) {
            ++m_ticks;
            return;
        }
        stage::request(m_counter, [event](stage::Reply<int> r) { return WordCount{event, std::move(r)}; }, 2s)
            .then(this, [this, event](int words) { // on this thread, whichever thread answered
                qInfo("after %d tick(s): %s has %d word(s)", m_ticks, qPrintable(QFileInfo(event).fileName()), words);
                Q_EMIT answered(words);
            })
            .onFailed(this, [](const stage::Error &e) { qWarning("no answer: %s", e.what()); });
    }

Q_SIGNALS:
    void answered(int words);

private:
    stage::Mailbox<WordCount> m_counter;
    int m_ticks = 0;
};

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("notes.txt"));
    auto write = [path](const char *text) {
        QFile file(path);
        if (file.open(QIODevice::WriteOnly))
            file.write(text);
    };
    write("one");

    // The worker: a slot-style consumer on a thread of its own, restarted if it throws.
    QThread workerThread;
    auto *worker = new QObject; // the consumer's context: the consumer lives as long as it does
    worker->moveToThread(&workerThread);
    workerThread.start();
    stage::Mailbox<WordCount> counter(16);
    stage::consume(counter, worker, [](WordCount &request) {
        QFile file(request.payload);
        if (!file.open(QIODevice::ReadOnly))
            throw std::runtime_error("cannot read the file"); // redelivered, then dead-lettered
        request.reply.send(int(QString::fromUtf8(file.readAll()).split(u' ', Qt::SkipEmptyParts).size()));
    });

    // Two signal sources feed one mailbox; the controller's slot consumes it.
    stage::Mailbox<QString> events(64);
    QTimer ticker;
    QFileSystemWatcher watcher({path});
    stage::connect(&ticker, &QTimer::timeout, events, [] { return QStringLiteral("tick"); });
    stage::connect(&watcher, &QFileSystemWatcher::fileChanged, events); // the path is the message
    Controller controller(counter);
    stage::Group *inbox = stage::consume(events, &controller, &Controller::onEvent);
    ticker.start(20ms);

    // The script: three edits; the last one (four words) ends the app.
    QTimer::singleShot(100ms, [&] { write("two words"); });
    QTimer::singleShot(200ms, [&] { write("now three words"); });
    QTimer::singleShot(300ms, [&] { write("and now four words"); });
    QObject::connect(&controller, &Controller::answered, &app, [&](int words) {
        if (words != 4)
            return;
        ticker.stop();
        events.close(); // the controller handles what is queued, then its consumer stops: exit
    });
    QObject::connect(inbox, &stage::Node::stateChanged, &app, [](stage::Node::State state) {
        if (state == stage::Node::State::Stopped)
            QCoreApplication::exit(0);
    });
    QTimer::singleShot(20s, [] { qWarning("no answer in time"); QCoreApplication::exit(1); });
    const int status = app.exec();
    QObject::connect(worker, &QObject::destroyed, &workerThread, &QThread::quit, Qt::DirectConnection);
    worker->deleteLater(); // on its thread, with its consumer; then the thread ends
    workerThread.wait();
    return status;
}

#include "main.moc"
