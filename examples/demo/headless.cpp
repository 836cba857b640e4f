#include "headless.h"

#include "democontroller.h"
#include "world.h"

#include <stage/processgroup.h>
#include <stage/waitfor.h>

#include <QtCore/QAbstractItemModel>
#include <QtCore/QCoreApplication>
#include <QtCore/QDir>
#include <QtCore/QElapsedTimer>
#include <QtCore/QFileInfo>
#include <QtCore/QMetaEnum>
#include <QtCore/QSet>
#include <QtCore/QTimer>
#include <QtQuick/QQuickItem>
#include <QtQuick/QQuickWindow>

#include <cstdio>

namespace {

QString stateName(stage::Node::State state)
{
    return QString::fromLatin1(QMetaEnum::fromType<stage::Node::State>().valueToKey(int(state)));
}

QString strategyName(stage::Supervisor::Strategy strategy)
{
    return QString::fromLatin1(QMetaEnum::fromType<stage::Supervisor::Strategy>().valueToKey(int(strategy)));
}

void out(const QString &line)
{
    std::printf("%s\n", qPrintable(line));
}

} // namespace

QString ImageCheck::describe() const
{
    return QStringLiteral("%1x%2, %3 colours, %4% not background")
        .arg(width)
        .arg(height)
        .arg(colours)
        .arg(foreground * 100.0, 0, 'f', 1);
}

ImageCheck checkImage(const QImage &source)
{
    ImageCheck check;
    if (source.isNull())
        return check;
    const QImage image = source.convertToFormat(QImage::Format_RGB32);
    check.width = image.width();
    check.height = image.height();
    QHash<QRgb, int> counts;
    int samples = 0;
    for (int y = 0; y < image.height(); y += 2) {
        const auto *line = reinterpret_cast<const QRgb *>(image.constScanLine(y));
        for (int x = 0; x < image.width(); x += 2) {
            ++counts[line[x]];
            ++samples;
        }
    }
    int commonest = 0;
    for (int n : std::as_const(counts))
        commonest = std::max(commonest, n);
    check.colours = int(counts.size());
    check.foreground = samples ? 1.0 - double(commonest) / samples : 0.0;
    return check;
}

HeadlessRun::HeadlessRun(DemoController *controller, DemoWorld *world, QQuickWindow *window,
                         const Options &options, QObject *parent)
    : QObject(parent), m_controller(controller), m_world(world), m_window(window), m_options(options)
{
    connect(controller, &DemoController::scenarioStepped, this, [this](const QString &text, bool ok) {
        out(QStringLiteral("[%1 s] %2%3")
                .arg(m_controller->log()->elapsed() / 1000.0, 5, 'f', 1)
                .arg(text, ok ? QString() : QStringLiteral(" (refused)")));
        std::fflush(stdout);
    });
}

void HeadlessRun::start()
{
    out(QStringLiteral("stage-demo: headless run, %1 s, seed %2, folder %3, server 127.0.0.1:%4")
            .arg(m_options.seconds)
            .arg(m_options.seed)
            .arg(m_controller->folder())
            .arg(m_controller->serverPort()));
    std::fflush(stdout);
    m_controller->playScenario(m_options.seconds);
    QTimer::singleShot(m_options.seconds * 1000, this, &HeadlessRun::drain);
}

bool HeadlessRun::drained() const
{
    for (const auto &account : m_controller->accountsNow())
        if (account.queued != 0 || account.held != 0)
            return false;
    for (const auto &storm : m_controller->storms())
        if (!storm.ended || (storm.escalated && !storm.recovered))
            return false;
    for (const stage::Node *node : m_controller->nodes())
        if (node->state() != stage::Node::State::Running)
            return false;
    return m_world->faults.hangsInProgress.load() == 0;
}

void HeadlessRun::drain()
{
    m_world->setProducing(false);
    m_controller->setStatus(QStringLiteral("draining: no new files or requests; waiting for the mailboxes to empty"));
    out(QStringLiteral("[%1 s] draining").arg(m_controller->log()->elapsed() / 1000.0, 5, 'f', 1));
    std::fflush(stdout);
    m_drainStartedMs = m_controller->log()->elapsed();
    auto *poll = new QTimer(this);
    connect(poll, &QTimer::timeout, this, [this, poll] {
        m_controller->sample();
        const bool timedOut = m_controller->log()->elapsed() - m_drainStartedMs > 20000;
        if (!drained() && !timedOut)
            return;
        poll->stop();
        poll->deleteLater();
        m_controller->setStatus(timedOut ? QStringLiteral("not drained after 20 s")
                                         : QStringLiteral("drained: every message acknowledged or dead-lettered"));
        // One more sample and a frame, so the window shows the final numbers.
        QTimer::singleShot(m_controller->sampleIntervalMs() + 100, this, &HeadlessRun::finish);
    });
    poll->start(100);
}

void HeadlessRun::finish()
{
    m_controller->sample();
    const bool drainedInTime = drained();
    const qint64 drainMs = m_controller->log()->elapsed() - m_drainStartedMs;

    // The screenshot, while the tree runs.
    ImageCheck image;
    QString screenshotLine;
    if (m_window) {
        const QImage grabbed = m_window->grabWindow();
        image = checkImage(grabbed);
        if (!m_options.screenshot.isEmpty()) {
            QDir().mkpath(QFileInfo(m_options.screenshot).absolutePath());
            if (!grabbed.save(m_options.screenshot))
                screenshotLine = QStringLiteral("screenshot: cannot save %1").arg(m_options.screenshot);
        }
        if (screenshotLine.isEmpty())
            screenshotLine = QStringLiteral("screenshot: %1 (%2)%3")
                                 .arg(m_options.screenshot.isEmpty() ? QStringLiteral("(not saved)") : m_options.screenshot,
                                      image.describe(), image.blank() ? QStringLiteral(" BLANK") : QString());
    } else {
        screenshotLine = QStringLiteral("screenshot: no window");
    }

    // The inspector's model: one row per node of the tree when the screenshot was taken.
    int viewRows = -1;
    if (m_window) {
        if (auto *view = m_window->findChild<QObject *>(QStringLiteral("supervisorView"))) {
            if (auto *model = qobject_cast<QAbstractItemModel *>(view->property("model").value<QObject *>())) {
                std::function<int(const QModelIndex &)> rows = [&](const QModelIndex &parent) {
                    int n = 0;
                    for (int r = 0; r < model->rowCount(parent); ++r)
                        n += 1 + rows(model->index(r, 0, parent));
                    return n;
                };
                viewRows = rows({});
            }
        }
    }
    const int treeNodes = int(m_controller->nodes().size());

    // The tree as it runs now, before the shutdown.
    QStringList tree;
    bool recovered = m_controller->root() != nullptr;
    std::function<void(const stage::Node *, int)> print = [&](const stage::Node *node, int depth) {
        recovered = recovered && node->state() == stage::Node::State::Running;
        QString line = QStringLiteral("  %1%2").arg(QString(depth * 2, QLatin1Char(' ')), node->objectName().leftJustified(14 - depth * 2));
        line += stateName(node->state()).leftJustified(11);
        if (auto *processes = qobject_cast<const stage::ProcessGroup *>(node)) {
            const auto s = processes->statistics();
            line += QStringLiteral("process group, %1 child process(es): started %2, failed %3, restarted %4; "
                                   "%5 processed")
                        .arg(processes->size())
                        .arg(s.started)
                        .arg(s.failed)
                        .arg(s.restarted)
                        .arg(processes->processedMessages());
        } else if (auto *group = qobject_cast<const stage::Group *>(node)) {
            const auto s = group->statistics();
            line += QStringLiteral("group %1 worker(s)%2: started %3, failed %4, abandoned %5, restarted %6")
                        .arg(group->size())
                        .arg(group->threadCount() > 0 ? QStringLiteral(" on %1 thread(s)").arg(group->threadCount())
                                                      : QStringLiteral(" on the GUI thread"))
                        .arg(s.started)
                        .arg(s.failed)
                        .arg(s.abandoned)
                        .arg(s.restarted);
        } else if (auto *sv = qobject_cast<const stage::Supervisor *>(node)) {
            const auto s = sv->statistics();
            line += QStringLiteral("%1: restarts %2, child failures %3, escalations %4")
                        .arg(strategyName(sv->strategy()))
                        .arg(s.restarts)
                        .arg(s.childFailures)
                        .arg(s.escalations);
        }
        tree.append(line);
        if (auto *sv = qobject_cast<const stage::Supervisor *>(node))
            for (const stage::Node *child : sv->childNodes())
                print(child, depth + 1);
    };
    if (m_controller->root())
        print(m_controller->root(), 0);
    const qint64 restarts = m_controller->totalRestarts();
    const QVariantMap work = m_controller->work();

    // Shut the tree down, then settle the accounts id by id: nothing is held any more.
    QElapsedTimer shutdownClock;
    shutdownClock.start();
    bool shutDown = true;
    if (stage::Supervisor *root = m_controller->root()) {
        try {
            stage::waitFor(root->shutdown(), std::chrono::seconds(30));
        } catch (const std::exception &e) {
            shutDown = false;
            out(QStringLiteral("stage-demo: the shutdown failed: %1").arg(QString::fromUtf8(e.what())));
        }
    }
    const qint64 shutdownMs = shutdownClock.elapsed();
    for (const stage::Node *node : m_controller->nodes())
        shutDown = shutDown && node->state() == stage::Node::State::Stopped;
    const bool hangsOver = m_world->waitForHangs(10000);

    struct Settled
    {
        DemoController::Account live;
        qint64 dead = 0, left = 0, lost = 0, queuedByMailbox = 0;
    };
    auto settle = [](const DemoController::Account &live, const Ledger &ledger, auto &mailbox) {
        Settled s;
        s.live = live;
        QSet<quint64> accounted;
        for (auto &letter : mailbox.takeDeadLetters()) {
            if constexpr (requires { letter.value.payload; })
                accounted.insert(letter.value.payload.id);
            else
                accounted.insert(letter.value.id);
            ++s.dead;
        }
        while (auto delivery = mailbox.tryReceive()) {
            if constexpr (requires { (*delivery)->payload; })
                accounted.insert((*delivery)->payload.id);
            else
                accounted.insert((*delivery)->id);
            ++s.left;
        }
        s.lost = ledger.missing(accounted).size();
        s.queuedByMailbox = mailbox.statistics().queued;
        return s;
    };
    const QList<DemoController::Account> live = m_controller->accountsNow();
    const Settled paths = settle(live[0], m_world->pathsLedger, m_world->paths);
    const Settled requests = settle(live[1], m_world->requestsLedger, m_world->requests);
    const QStringList imageReasons = m_world->images.object()->deadLetterReasons();
    const Settled images = settle(live[2], m_world->imagesLedger, m_world->images);
    int crashReasons = 0;
    for (const QString &reason : imageReasons)
        crashReasons += reason.contains(QLatin1String("killed by signal")) ? 1 : 0;

    bool stormsOk = !m_controller->storms().isEmpty();
    QStringList stormLines;
    for (const auto &storm : m_controller->storms()) {
        stormsOk = stormsOk && storm.escalated && storm.recovered;
        stormLines.append(QStringLiteral("storm on %1: %2 %3, %4")
                              .arg(storm.node, storm.target,
                                   storm.escalated ? QStringLiteral("exceeded its intensity and escalated")
                                                   : QStringLiteral("did NOT escalate"),
                                   storm.recovered ? QStringLiteral("then recovered") : QStringLiteral("did NOT recover")));
    }
    const auto faults = m_controller->faultCounts();
    const qint64 lost = paths.lost + requests.lost + images.lost;

    out(QString());
    out(QStringLiteral("== Stage Demo summary (seed %1, %2 s of faults, drained in %3 ms) ==")
            .arg(m_options.seed)
            .arg(m_options.seconds)
            .arg(drainMs));
    out(QStringLiteral("tree (before the shutdown):"));
    for (const QString &line : std::as_const(tree))
        out(line);
    out(QStringLiteral("messages:"));
    for (const Settled *s : {&paths, &requests, &images}) {
        out(QStringLiteral("  %1 sent %2, acknowledged %3, redelivered %4, dead-lettered %5, left queued %6, lost %7"
                           " (acknowledged twice: %8; sends the mailbox counted: %9)")
                .arg(s->live.name.leftJustified(9))
                .arg(s->live.sent)
                .arg(s->live.acknowledged)
                .arg(s->live.redelivered)
                .arg(s->dead)
                .arg(s->left)
                .arg(s->lost)
                .arg(s->live.duplicates)
                .arg(s->queuedByMailbox));
    }
    out(QStringLiteral("work: %1 files indexed (%2 words), %3 hashed on the thread pool; %4 requests answered of %5 "
                       "(%6 dead-lettered, %7 timed out; %8 connections, the server dropped %9)")
            .arg(work.value(QStringLiteral("filesIndexed")).toLongLong())
            .arg(work.value(QStringLiteral("words")).toLongLong())
            .arg(work.value(QStringLiteral("filesHashed")).toLongLong())
            .arg(work.value(QStringLiteral("requestsAnswered")).toLongLong())
            .arg(work.value(QStringLiteral("requestsSent")).toLongLong())
            .arg(work.value(QStringLiteral("requestsDeadLettered")).toLongLong())
            .arg(work.value(QStringLiteral("requestsTimedOut")).toLongLong())
            .arg(work.value(QStringLiteral("fetchAttempts")).toLongLong())
            .arg(work.value(QStringLiteral("serverDropped")).toLongLong()));
    out(QStringLiteral("      %1 device readings").arg(work.value(QStringLiteral("readings")).toLongLong()));
    out(QStringLiteral("      %1 thumbnails by %2 child processes of the thumbnailer; %3 image(s) dead-lettered (%4 by a "
                       "crash: %5)")
            .arg(work.value(QStringLiteral("thumbnails")).toLongLong())
            .arg(work.value(QStringLiteral("thumbnailProcesses")).toLongLong())
            .arg(images.dead)
            .arg(crashReasons)
            .arg(imageReasons.isEmpty() ? QStringLiteral("-") : imageReasons.constLast()));
    out(QStringLiteral("faults injected: throw %1, hang %2, poison %3, segfault %4, storm %5, stop %6, start %7")
            .arg(faults.throws)
            .arg(faults.hangs)
            .arg(faults.poisons)
            .arg(faults.segfaults)
            .arg(faults.storms)
            .arg(faults.stops)
            .arg(faults.starts));
    for (const QString &line : std::as_const(stormLines))
        out(QStringLiteral("  ") + line);
    out(QStringLiteral("shutdown: %1 in %2 ms%3")
            .arg(shutDown ? QStringLiteral("every node stopped") : QStringLiteral("FAILED"))
            .arg(shutdownMs)
            .arg(hangsOver ? QString() : QStringLiteral(" (a hung worker is still alive)")));
    out(screenshotLine);
    out(viewRows < 0 ? QStringLiteral("view: no SupervisorView model found")
                     : QStringLiteral("view: the SupervisorView's model had %1 rows (the tree has %2 nodes)").arg(viewRows).arg(treeNodes));

    struct Check
    {
        QString what;
        bool ok;
    };
    const QList<Check> checks = {
        {QStringLiteral("restarts happened (%1)").arg(restarts), restarts > 0},
        {QStringLiteral("the storm escalated and recovered"), stormsOk},
        {QStringLiteral("the tree recovered (every node Running)"), recovered},
        {QStringLiteral("drained (nothing queued or held)"), drainedInTime},
        {QStringLiteral("lost %1").arg(lost), lost == 0},
        {QStringLiteral("nothing acknowledged twice"),
         paths.live.duplicates == 0 && requests.live.duplicates == 0 && images.live.duplicates == 0},
        {QStringLiteral("every segfault dead-lettered by a crash (%1 of %2)").arg(crashReasons).arg(faults.segfaults),
         crashReasons == faults.segfaults},
        {QStringLiteral("every send counted by both sides (%1 = %2, %3 = %4, %5 = %6)")
             .arg(paths.live.sent)
             .arg(paths.queuedByMailbox)
             .arg(requests.live.sent)
             .arg(requests.queuedByMailbox)
             .arg(images.live.sent)
             .arg(images.queuedByMailbox),
         paths.live.sent == paths.queuedByMailbox && requests.live.sent == requests.queuedByMailbox
             && images.live.sent == images.queuedByMailbox},
        {QStringLiteral("the screenshot is not blank"), !image.blank()},
        {QStringLiteral("the view showed every node"), viewRows == treeNodes},
        {QStringLiteral("clean shutdown"), shutDown && hangsOver},
    };
    bool pass = true;
    QStringList checkTexts;
    for (const Check &c : checks) {
        checkTexts.append(c.what + (c.ok ? QStringLiteral(": ok") : QStringLiteral(": FAILED")));
        pass = pass && c.ok;
    }
    out(QStringLiteral("checks: ") + checkTexts.join(QStringLiteral("; ")));
    out(QStringLiteral("result: %1").arg(pass ? QStringLiteral("PASS") : QStringLiteral("FAIL")));
    std::fflush(stdout);
    m_exitCode = pass ? 0 : 1;
    QCoreApplication::exit(m_exitCode);
}
