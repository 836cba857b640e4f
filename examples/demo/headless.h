#pragma once
// The headless run: a scripted scenario of faults, a drain, a screenshot and a plain-text summary.

#include <QtCore/QObject>
#include <QtCore/QString>
#include <QtGui/QImage>

class DemoController;
class DemoWorld;
class QQuickWindow;

/* How much of an image is not background: the screenshot check. */
struct ImageCheck
{
    int width = 0, height = 0;
    int colours = 0;         // distinct colours among the sampled pixels
    double foreground = 0.0; // share of sampled pixels that differ from the commonest colour
    bool blank() const { return width == 0 || colours < 16 || foreground < 0.05; }
    QString describe() const;
};
ImageCheck checkImage(const QImage &image);

/*
    Plays the scenario (DemoController::playScenario(): faults at fixed fractions of the run),
    then stops producing, waits
    until every mailbox is drained and the tree runs again, saves the screenshot, shuts the tree
    down, settles the accounts id by id, prints the summary and quits the application with 0, or
    1 if anything was lost, the tree did not recover, the storm did not escalate and recover, or
    the screenshot is blank.
*/
class HeadlessRun : public QObject
{
    Q_OBJECT

public:
    struct Options
    {
        int seconds = 20;
        QString screenshot;
        quint32 seed = 1;
    };
    HeadlessRun(DemoController *controller, DemoWorld *world, QQuickWindow *window, const Options &options,
                QObject *parent = nullptr);

    void start();
    int exitCode() const { return m_exitCode; }

private:
    void drain();
    bool drained() const;
    void finish();

    DemoController *m_controller;
    DemoWorld *m_world;
    QQuickWindow *m_window;
    Options m_options;
    int m_exitCode = 1;
    qint64 m_drainStartedMs = 0;
};
