import QtQuick
import QtQuick.Layouts
import QtQuick.Window
import Stage
import StageDemo

Window {
    id: window
    width: 1280
    height: 820
    visible: true
    title: "Stage Demo"
    color: Theme.window

    readonly property var work: DemoController.work
    readonly property var accounts: DemoController.accounts

    // The background work: one supervision tree. It starts once this whole file is loaded.
    // The bodies ("indexer", ...) are C++ coroutines registered by name (workers.cpp).
    Supervisor {
        id: root
        objectName: "demo"
        strategy: Supervisor.OneForOne
        maxRestarts: 5; restartPeriod: 10000
        backoff: Stage.exponentialBackoff(10, 2000)
        running: true
        Component.onCompleted: DemoController.tree = root

        // The folder's files: counted on two worker threads, then hashed on the thread pool.
        // RestForOne: when the indexer restarts, so does the hasher, which reads its index.
        Supervisor {
            objectName: "files"
            strategy: Supervisor.RestForOne
            maxRestarts: 3; restartPeriod: 5000
            backoff: Stage.exponentialBackoff(10, 2000)
            Group {
                objectName: "indexer"; worker: "indexer"
                size: 2; threadCount: 2
                mailbox: Stage.mailbox("paths")
                maxRestarts: 5; restartPeriod: 10000   // absorbs a poison message's redeliveries itself
                shutdownTimeout: 1000
            }
            Group { objectName: "hasher"; worker: "hasher"; shutdownTimeout: 1000 }
        }
        // Requests over TCP to the flaky local server, answered on the fetcher's own thread.
        Supervisor {
            objectName: "network"
            strategy: Supervisor.OneForOne
            maxRestarts: 3; restartPeriod: 5000
            backoff: Stage.exponentialBackoff(10, 2000)
            Group {
                objectName: "fetcher"; worker: "fetcher"
                size: 2; threadCount: 1
                mailbox: Stage.mailbox("requests")
                maxRestarts: 5; restartPeriod: 10000
                shutdownTimeout: 1000
            }
            Group { objectName: "requester"; worker: "requester"; size: 2; shutdownTimeout: 1000 }
        }
        // A device that sometimes hangs: the watchdog stops a poller that misses its heartbeat.
        Supervisor {
            objectName: "devices"
            strategy: Supervisor.OneForAll
            maxRestarts: 3; restartPeriod: 10000
            backoff: Stage.exponentialBackoff(10, 2000)
            Group {
                objectName: "poller"; worker: "poller"
                heartbeatTimeout: 1000
                Supervisor.restartType: Stage.Transient
            }
        }
    }

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: Theme.gap
        spacing: Theme.gap

        // Title and the one number that matters.
        RowLayout {
            Layout.fillWidth: true
            Layout.fillHeight: false
            spacing: 16
            Column {
                Layout.fillWidth: true
                Text { text: "Stage Demo"; font.pixelSize: 24; font.bold: true; color: Theme.text }
                Text {
                    text: "Background work that fails, hangs and gets poison, supervised by one tree, and heals itself."
                    font.pixelSize: 13; color: Theme.muted
                }
            }
            Text {
                objectName: "status"
                Layout.maximumWidth: 420
                text: DemoController.status
                elide: Text.ElideRight
                font.pixelSize: 13; color: Theme.accent
            }
            Rectangle {
                objectName: "lostBadge"
                implicitWidth: lostText.implicitWidth + 28
                implicitHeight: 44
                radius: 22
                color: DemoController.lost > 0 ? Theme.failed : Theme.running
                Text {
                    id: lostText
                    anchors.centerIn: parent
                    text: "lost: " + DemoController.lost
                    color: "white"; font.pixelSize: 20; font.bold: true
                }
            }
        }

        RowLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            spacing: Theme.gap

            // Left: the tree and the fault buttons.
            ColumnLayout {
                Layout.preferredWidth: 440
                Layout.maximumWidth: 440
                Layout.fillHeight: true
                spacing: Theme.gap

                Card {
                    objectName: "treeCard"
                    title: "Supervision tree"
                    subtitle: "declared in Main.qml"
                    Layout.fillWidth: true
                    Layout.fillHeight: true
                    NodeList { anchors.fill: parent }
                }
                Card {
                    title: "Inject a fault"
                    subtitle: "pick a node, then an action"
                    Layout.fillWidth: true
                    Layout.preferredHeight: 210
                    FaultPanel { id: faults; objectName: "faultPanel"; anchors.fill: parent }
                }
            }

            // Right: what the work achieved, the mailboxes, the restarts, the log.
            ColumnLayout {
                Layout.fillWidth: true
                Layout.fillHeight: true
                spacing: Theme.gap

                Card {
                    title: "What the work achieved"
                    subtitle: "folder " + DemoController.folder + " · server 127.0.0.1:" + DemoController.serverPort
                    Layout.fillWidth: true
                    Layout.preferredHeight: 120
                    RowLayout {
                        anchors.fill: parent
                        spacing: 8
                        StatTile {
                            objectName: "filesIndexed"
                            Layout.fillWidth: true; label: "files indexed"; value: work.filesIndexed || 0
                            detail: (work.words || 0) + " words; " + (work.filesWritten || 0) + " written"
                        }
                        StatTile {
                            Layout.fillWidth: true; label: "files hashed"; value: work.filesHashed || 0
                            detail: "SHA-256, thread pool"
                        }
                        StatTile {
                            objectName: "requestsAnswered"
                            Layout.fillWidth: true; label: "requests answered"; value: work.requestsAnswered || 0
                            detail: "of " + (work.requestsSent || 0) + " sent"
                        }
                        StatTile {
                            Layout.fillWidth: true; label: "device readings"; value: work.readings || 0
                            detail: (work.lastReading || 0).toFixed(2) + " °C last"
                        }
                        StatTile {
                            objectName: "restarts"
                            Layout.fillWidth: true; label: "restarts"; value: work.restarts || 0
                            detail: "workers and subtrees"
                            valueColor: Theme.restarting
                        }
                    }
                }
                RowLayout {
                    Layout.fillWidth: true
                    Layout.fillHeight: false
                    Layout.preferredHeight: 150
                    spacing: Theme.gap
                    MailboxCard {
                        objectName: "pathsCard"
                        Layout.fillWidth: true; Layout.fillHeight: true
                        title: "mailbox \"paths\""; subtitle: "watcher → indexer"
                        mailbox: DemoController.pathsMailbox
                        account: window.accounts.length > 0 ? window.accounts[0] : ({})
                    }
                    MailboxCard {
                        objectName: "requestsCard"
                        Layout.fillWidth: true; Layout.fillHeight: true
                        title: "mailbox \"requests\""; subtitle: "requester → fetcher, with replies"
                        mailbox: DemoController.requestsMailbox
                        account: window.accounts.length > 1 ? window.accounts[1] : ({})
                    }
                }
                Card {
                    title: "Restarts over time"
                    subtitle: "per subtree, last 60 s"
                    Layout.fillWidth: true
                    Layout.preferredHeight: 170
                    RestartChart { objectName: "restartChart"; anchors.fill: parent }
                }
                Card {
                    title: "Event log"
                    subtitle: DemoController.eventLog.count + " events"
                    Layout.fillWidth: true
                    Layout.fillHeight: true
                    EventLogView { objectName: "eventLog"; anchors.fill: parent }
                }
            }
        }
    }
}
