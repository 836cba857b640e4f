import QtQuick
import QtQuick.Layouts
import QtQuick.Window
import Stage
import StageDemo

Window {
    id: window
    width: 1440
    height: 960
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
        // Thumbnails by a fragile image codec, in child processes (this app started again):
        // a segfault kills one child, never the app; the image it held is redelivered, and
        // dead-lettered ("killed by signal 11") after its redeliveries.
        ProcessGroup {
            objectName: "thumbnailer"; entry: "thumbnailer"
            size: 1
            maxRestarts: 6; restartPeriod: 10000   // absorbs a poison image's crashes itself
            backoff: Stage.exponentialBackoff(10, 500)
            shutdownTimeout: 1000
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
                    text: "Background work that throws, hangs and meets poison, in one supervision tree that heals it. "
                          + "Pick a node and inject a fault."
                    font.pixelSize: 13; color: Theme.muted
                }
            }
            Text {
                objectName: "status"
                Layout.maximumWidth: 480
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

        // The tree as it runs; what it achieved; the fault buttons.
        RowLayout {
            Layout.fillWidth: true
            Layout.fillHeight: false
            Layout.preferredHeight: 480
            spacing: Theme.gap

            Card {
                objectName: "treeCard"
                title: "Supervision tree"
                subtitle: "declared in Main.qml · select a node to inspect it and to aim the faults"
                Layout.fillWidth: true
                Layout.fillHeight: true
                SupervisorView {
                    id: inspector
                    objectName: "supervisorView"
                    anchors.fill: parent
                    anchors.leftMargin: -8; anchors.rightMargin: -8; anchors.bottomMargin: -6
                    root: root
                    padding: 0
                    // The selection and the fault panel's target follow each other.
                    readonly property QtObject aimed: DemoController.tree ? DemoController.node(DemoController.target) : null
                    onCurrentNodeChanged: if (currentNode) DemoController.target = currentNode.objectName
                    onAimedChanged: if (aimed && currentNode !== aimed) select(aimed)
                    // At start the model has no rows yet: select the target once it has.
                    Timer {
                        interval: 100; repeat: true
                        running: !inspector.currentNode && inspector.aimed !== null
                        onTriggered: inspector.select(inspector.aimed)
                    }
                }
            }
            ColumnLayout {
                Layout.preferredWidth: 500
                Layout.maximumWidth: 500
                Layout.fillHeight: true
                spacing: Theme.gap

                Card {
                    title: "What the work achieved"
                    subtitle: "server 127.0.0.1:" + DemoController.serverPort
                    Layout.fillWidth: true
                    Layout.preferredHeight: 204
                    GridLayout {
                        anchors.fill: parent
                        columns: 4
                        rowSpacing: 8; columnSpacing: 8
                        StatTile {
                            objectName: "filesIndexed"
                            Layout.fillWidth: true; Layout.fillHeight: true
                            label: "files indexed"; value: window.work.filesIndexed || 0
                            detail: (window.work.words || 0) + " words"
                        }
                        StatTile {
                            Layout.fillWidth: true; Layout.fillHeight: true
                            label: "files hashed"; value: window.work.filesHashed || 0
                            detail: "SHA-256, thread pool"
                        }
                        StatTile {
                            objectName: "requestsAnswered"
                            Layout.fillWidth: true; Layout.fillHeight: true
                            label: "requests answered"; value: window.work.requestsAnswered || 0
                            detail: "of " + (window.work.requestsSent || 0) + " sent"
                        }
                        StatTile {
                            Layout.fillWidth: true; Layout.fillHeight: true
                            label: "server drops"
                            value: window.work.serverDropped || 0
                            detail: "slow " + (window.work.serverSlow || 0) + " · garbage " + (window.work.serverGarbage || 0)
                        }
                        StatTile {
                            Layout.fillWidth: true; Layout.fillHeight: true
                            label: "device readings"; value: window.work.readings || 0
                            detail: (window.work.lastReading || 0).toFixed(2) + " °C last"
                        }
                        StatTile {
                            objectName: "thumbnails"
                            Layout.fillWidth: true; Layout.fillHeight: true
                            label: "thumbnails"; value: window.work.thumbnails || 0
                            detail: "by " + (window.work.thumbnailProcesses || 0) + " processes"
                        }
                        StatTile {
                            objectName: "restarts"
                            Layout.fillWidth: true; Layout.fillHeight: true
                            label: "restarts"; value: window.work.restarts || 0
                            detail: "workers, subtrees"
                            valueColor: Theme.restarting
                        }
                    }
                }
                Card {
                    title: "Inject a fault"
                    subtitle: "into " + DemoController.target
                    Layout.fillWidth: true
                    Layout.fillHeight: true
                    FaultPanel { id: faults; objectName: "faultPanel"; anchors.fill: parent }
                }
            }
        }

        // The mailboxes, the restarts over time, and everything that happened.
        RowLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            spacing: Theme.gap

            ColumnLayout {
                Layout.preferredWidth: 420
                Layout.maximumWidth: 420
                Layout.fillHeight: true
                spacing: Theme.gap
                MailboxCard {
                    objectName: "pathsCard"
                    Layout.fillWidth: true; Layout.fillHeight: true
                    title: "mailbox \"paths\""; subtitle: "file watcher → indexer"
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
                MailboxCard {
                    objectName: "imagesCard"
                    Layout.fillWidth: true; Layout.fillHeight: true
                    title: "mailbox \"images\""; subtitle: "app → thumbnailer's child processes, with replies"
                    mailbox: DemoController.imagesMailbox
                    account: window.accounts.length > 2 ? window.accounts[2] : ({})
                }
            }
            Card {
                title: "Restarts over time"
                subtitle: "per subtree, last 60 s"
                Layout.preferredWidth: 400
                Layout.fillHeight: true
                RestartChart { objectName: "restartChart"; anchors.fill: parent }
            }
            Card {
                title: "Event log"
                subtitle: DemoController.eventLog.count + " events, newest first"
                Layout.fillWidth: true
                Layout.fillHeight: true
                EventLogView { objectName: "eventLog"; anchors.fill: parent }
            }
        }
    }
}
