import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Stage

/*
    The inspector of a live supervision tree: drop it in and set root (or model).

        SupervisorView { anchors.fill: parent; root: myRootSupervisor }

    Left: the tree, one row per node, with a state badge, its counters, a bar for the restart
    budget in use (restarts within restartPeriod / maxRestarts), restarts over the last minute
    as a sparkline, and the mailbox a group reads. Filter by name and state above it. Keys: Up
    and Down move, Left and Right collapse and expand, Space toggles. Right: the selected node,
    its history with timestamps and reasons, its last failures, its mailbox's dead letters, and
    actions (restart, stop, start, resize a group). Status comes from SupervisionTreeModel,
    coalesced every flushInterval ms, so the view stays responsive with a thousand nodes
    restarting continuously.
*/
Pane {
    id: view

    /* The root node shown (a Supervisor or a Group); or set model for several roots. */
    property Node root: null
    /* The model shown: by default one over root. */
    property SupervisionTreeModel model: ownModel
    /* How often status changes reach the view, in ms. */
    property int flushInterval: 100
    /* The node selected in the tree (null: none). */
    readonly property Node currentNode: d.currentNode
    /* The text of the name filter above the tree (case-insensitive; empty: every node). */
    property alias filterText: filterField.text

    /* Whether the detail pane of the selected node is shown (default true). */
    property bool showDetails: true

    /* Selects \a node in the tree (and shows it in the detail pane). False if it is not shown
       yet: it is then selected as soon as its row appears. */
    function select(node) {
        const index = filtered.indexOf(node)
        if (!index.valid) {
            d.pendingSelection = node
            return false
        }
        d.pendingSelection = null
        tree.selectionModel.setCurrentIndex(index, ItemSelectionModel.ClearAndSelect)
        return true
    }

    implicitWidth: 960
    implicitHeight: 560
    padding: 8

    SupervisionTreeModel {
        id: ownModel
        root: view.root
        flushInterval: view.flushInterval
    }

    SupervisionFilterModel {
        id: filtered
        sourceModel: view.model
        filterText: filterField.text
        stateFilter: stateBox.currentIndex - 1
    }

    QtObject {
        id: d
        property Node currentNode: null
        property Node pendingSelection: null
        property var currentIndex: null
        // The selected row's details, refreshed from the model when it flushes.
        property var details: ({})

        function select(index) {
            currentIndex = index
            currentNode = index && index.valid ? filtered.roleData(index, SupervisionTreeModel.NodeRole) : null
            refresh()
        }
        function refresh() {
            if (!currentNode) {
                details = ({})
                return
            }
            const index = filtered.indexOf(currentNode)
            if (!index.valid) {
                details = ({})
                return
            }
            const r = role => filtered.roleData(index, role)
            details = {
                name: r(SupervisionTreeModel.NameRole),
                kind: r(SupervisionTreeModel.KindRole),
                stateText: r(SupervisionTreeModel.StateTextRole),
                stateReason: r(SupervisionTreeModel.StateReasonRole),
                strategy: r(SupervisionTreeModel.StrategyRole),
                size: r(SupervisionTreeModel.SizeRole),
                running: r(SupervisionTreeModel.RunningRole),
                started: r(SupervisionTreeModel.StartedRole),
                failed: r(SupervisionTreeModel.FailedRole),
                restarts: r(SupervisionTreeModel.RestartsRole),
                recentRestarts: r(SupervisionTreeModel.RecentRestartsRole),
                maxRestarts: r(SupervisionTreeModel.MaxRestartsRole),
                uptime: r(SupervisionTreeModel.UptimeRole),
                history: r(SupervisionTreeModel.HistoryRole),
                hasMailbox: r(SupervisionTreeModel.HasMailboxRole),
                mailboxDepth: r(SupervisionTreeModel.MailboxDepthRole),
                deadLetters: r(SupervisionTreeModel.DeadLettersRole),
                deadLetterReasons: r(SupervisionTreeModel.DeadLetterReasonsRole)
            }
        }
        function uptimeText(ms) {
            if (!ms || ms <= 0)
                return ""
            const s = Math.floor(ms / 1000)
            return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s"
        }
    }

    Connections {
        target: filtered
        function onDataChanged() { d.refresh() }
        function onRowsRemoved() { d.refresh() }
        function onModelReset() { d.select(null) }
        function onRowsInserted() {
            expandTimer.restart()
            if (d.pendingSelection)
                view.select(d.pendingSelection)
        }
    }

    Timer {
        id: expandTimer
        interval: 0
        onTriggered: tree.expandRecursively()
    }

    ColumnLayout {
        anchors.fill: parent
        spacing: 6

        RowLayout {
            Layout.fillWidth: true
            spacing: 8
            TextField {
                id: filterField
                objectName: "filterField"
                Layout.preferredWidth: 220
                placeholderText: qsTr("Filter by name")
                selectByMouse: true
            }
            ComboBox {
                id: stateBox
                objectName: "stateFilter"
                Layout.preferredWidth: 150
                // Index - 1 is the Node.State filtered on (0: any state).
                model: [qsTr("Any state"), "Idle", "Starting", "Running", "Restarting", "Stopping", "Stopped", "Failed"]
            }
            Label {
                Layout.fillWidth: true
                horizontalAlignment: Text.AlignRight
                color: "#4b5563"
                text: view.root ? qsTr("%1: %2").arg(view.root.objectName || "root").arg(view.root.state === Node.Running
                        ? qsTr("running") : view.root.stateReason || "") : ""
                elide: Text.ElideRight
            }
        }

        SplitView {
            Layout.fillWidth: true
            Layout.fillHeight: true
            orientation: Qt.Horizontal

            ColumnLayout {
                SplitView.fillWidth: true
                SplitView.minimumWidth: 360
                spacing: 0

            // Column captions, aligned with the row layout below.
            Rectangle {
                Layout.fillWidth: true
                implicitHeight: 24
                color: "#e5e7eb"
                RowLayout {
                    anchors.fill: parent
                    anchors.leftMargin: 24
                    anchors.rightMargin: 8
                    spacing: 8
                    Repeater {
                        model: [[qsTr("State"), 84], [qsTr("Node"), -1], [qsTr("Running"), 70], [qsTr("Restarts"), 86],
                                [qsTr("Budget"), 50], [qsTr("1 min"), 60], [qsTr("Mailbox"), 64]]
                        delegate: Text {
                            required property var modelData
                            Layout.preferredWidth: modelData[1] > 0 ? modelData[1] : -1
                            Layout.fillWidth: modelData[1] < 0
                            text: modelData[0]
                            font.pixelSize: 11
                            font.bold: true
                            color: "#4b5563"
                            elide: Text.ElideRight
                        }
                    }
                }
            }

            TreeView {
                id: tree
                Layout.fillWidth: true
                Layout.fillHeight: true
                objectName: "tree"
                clip: true
                model: filtered
                keyNavigationEnabled: true
                boundsBehavior: Flickable.StopAtBounds
                selectionModel: ItemSelectionModel {
                    model: filtered
                    onCurrentChanged: (current) => d.select(current)
                }
                ScrollBar.vertical: ScrollBar { }

                Component.onCompleted: expandRecursively()

                Keys.onPressed: (event) => {
                    const row = tree.currentRow
                    if (row < 0)
                        return
                    if (event.key === Qt.Key_Left) {
                        tree.collapse(row)
                        event.accepted = true
                    } else if (event.key === Qt.Key_Right) {
                        tree.expand(row)
                        event.accepted = true
                    } else if (event.key === Qt.Key_Space) {
                        tree.toggleExpanded(row)
                        event.accepted = true
                    }
                }

                delegate: Rectangle {
                    id: rowItem
                    required property TreeView treeView
                    required property bool isTreeNode
                    required property bool expanded
                    required property int hasChildren
                    required property int depth
                    required property int row
                    required property int column
                    required property bool current
                    required property string name
                    required property string kind
                    required property string stateText
                    required property string strategy
                    required property int size
                    required property int running
                    required property int restarts
                    required property int recentRestarts
                    required property int maxRestarts
                    required property real restartBudget
                    required property bool hasMailbox
                    required property int mailboxDepth
                    required property int deadLetters
                    required property var restartSparkline

                    implicitWidth: Math.max(rowItem.treeView.width, 560)
                    implicitHeight: 30
                    color: current ? "#dbeafe" : (row % 2 ? "#f9fafb" : "#ffffff")

                    TapHandler {
                        onTapped: {
                            rowItem.treeView.forceActiveFocus()
                            rowItem.treeView.selectionModel.setCurrentIndex(
                                rowItem.treeView.modelIndex(Qt.point(rowItem.column, rowItem.row)),
                                ItemSelectionModel.ClearAndSelect)
                        }
                        onDoubleTapped: rowItem.treeView.toggleExpanded(rowItem.row)
                    }

                    RowLayout {
                        anchors.fill: parent
                        anchors.leftMargin: 6 + rowItem.depth * 18
                        anchors.rightMargin: 8
                        spacing: 8

                        Text {
                            Layout.preferredWidth: 12
                            text: rowItem.hasChildren ? (rowItem.expanded ? "\u25BE" : "\u25B8") : ""
                            color: "#6b7280"
                            TapHandler { onTapped: rowItem.treeView.toggleExpanded(rowItem.row) }
                        }
                        StateBadge {
                            Layout.preferredWidth: 84
                            stateText: rowItem.stateText
                        }
                        Text {
                            Layout.fillWidth: true
                            Layout.minimumWidth: 110
                            elide: Text.ElideRight
                            font.bold: rowItem.kind === "Supervisor"
                            text: (rowItem.name || rowItem.kind)
                                  + (rowItem.strategy ? "  \u00B7 " + rowItem.strategy : "")
                        }
                        Text {
                            Layout.preferredWidth: 70
                            color: "#374151"
                            font.pixelSize: 12
                            text: rowItem.kind === "Supervisor" ? rowItem.running + "/" + rowItem.size + qsTr(" up")
                                                                : rowItem.running + "/" + rowItem.size + qsTr(" wk")
                        }
                        Text {
                            Layout.preferredWidth: 86
                            elide: Text.ElideRight
                            color: rowItem.restarts > 0 ? "#92400e" : "#6b7280"
                            font.pixelSize: 12
                            text: rowItem.restarts + qsTr(" restarts")
                        }
                        // The restart budget in use: recent restarts / maxRestarts.
                        Rectangle {
                            Layout.preferredWidth: 50
                            Layout.preferredHeight: 6
                            radius: 3
                            color: "#e5e7eb"
                            visible: rowItem.restartBudget >= 0
                            Rectangle {
                                width: parent.width * Math.min(1, Math.max(0, rowItem.restartBudget))
                                height: parent.height
                                radius: 3
                                color: rowItem.restartBudget >= 1 ? "#d13b3b"
                                                                  : rowItem.restartBudget >= 0.5 ? "#d99a1e" : "#2e9d57"
                            }
                        }
                        Text {
                            Layout.preferredWidth: 50
                            visible: rowItem.restartBudget < 0
                            text: qsTr("no limit")
                            color: "#9ca3af"
                            font.pixelSize: 11
                        }
                        Sparkline {
                            Layout.preferredWidth: 60
                            Layout.preferredHeight: 16
                            values: rowItem.restartSparkline
                        }
                        Text {
                            Layout.preferredWidth: 64
                            font.pixelSize: 12
                            elide: Text.ElideRight
                            color: rowItem.deadLetters > 0 ? "#b91c1c" : "#374151"
                            // depth and dead letters (the detail pane spells them out)
                            text: rowItem.hasMailbox ? qsTr("\u2709%1 \u2620%2").arg(rowItem.mailboxDepth).arg(rowItem.deadLetters) : ""
                        }
                    }
                }
            }

            }

            // The selected node.
            Pane {
                id: detail
                objectName: "detail"
                visible: view.showDetails
                SplitView.preferredWidth: 330
                SplitView.minimumWidth: 260
                padding: 10
                background: Rectangle { color: "#f3f4f6" }

                ColumnLayout {
                    anchors.fill: parent
                    spacing: 6
                    visible: d.currentNode !== null

                    RowLayout {
                        Layout.fillWidth: true
                        Label {
                            Layout.fillWidth: true
                            text: d.details.name || d.details.kind || ""
                            font.pixelSize: 16
                            font.bold: true
                            elide: Text.ElideRight
                        }
                        StateBadge { stateText: d.details.stateText || "Idle" }
                    }
                    Label {
                        Layout.fillWidth: true
                        text: (d.details.kind || "") + (d.details.strategy ? " \u00B7 " + d.details.strategy : "")
                              + (d.details.uptime > 0 ? " \u00B7 " + qsTr("up %1").arg(d.uptimeText(d.details.uptime)) : "")
                        color: "#4b5563"
                    }
                    Label {
                        Layout.fillWidth: true
                        visible: text !== ""
                        text: d.details.stateReason || ""
                        wrapMode: Text.Wrap
                        maximumLineCount: 3
                        elide: Text.ElideRight
                        color: "#b91c1c"
                    }
                    Label {
                        Layout.fillWidth: true
                        text: qsTr("started %1 \u00B7 failed %2 \u00B7 restarts %3 \u00B7 budget %4")
                              .arg(d.details.started).arg(d.details.failed).arg(d.details.restarts)
                              .arg(d.details.maxRestarts < 0 ? qsTr("unlimited")
                                                             : d.details.recentRestarts + "/" + d.details.maxRestarts)
                        wrapMode: Text.Wrap
                    }
                    Label {
                        Layout.fillWidth: true
                        visible: d.details.hasMailbox === true
                        text: qsTr("mailbox: %1 queued \u00B7 %2 dead letters").arg(d.details.mailboxDepth).arg(d.details.deadLetters)
                    }
                    Repeater {
                        model: d.details.hasMailbox ? (d.details.deadLetterReasons || []).slice(-3) : []
                        delegate: Label {
                            required property string modelData
                            Layout.fillWidth: true
                            text: "\u2620 " + modelData
                            elide: Text.ElideRight
                            color: "#7f1d1d"
                            font.pixelSize: 11
                        }
                    }

                    RowLayout {
                        Layout.fillWidth: true
                        spacing: 4
                        Button {
                            objectName: "restartButton"
                            text: qsTr("Restart")
                            onClicked: Stage.restart(d.currentNode)
                        }
                        Button {
                            objectName: "stopButton"
                            text: qsTr("Stop")
                            enabled: d.currentNode !== null && d.currentNode.running
                            onClicked: Stage.stop(d.currentNode)
                        }
                        Button {
                            objectName: "startButton"
                            text: qsTr("Start")
                            enabled: d.currentNode !== null && !d.currentNode.running
                            onClicked: Stage.start(d.currentNode)
                        }
                    }
                    RowLayout {
                        Layout.fillWidth: true
                        visible: d.details.kind === "Group"
                        Label { text: qsTr("Workers") }
                        SpinBox {
                            id: sizeBox
                            objectName: "sizeBox"
                            from: 0
                            to: 256
                            editable: true
                            value: d.details.size || 0
                        }
                        Button {
                            objectName: "resizeButton"
                            text: qsTr("Resize")
                            onClicked: Stage.resize(d.currentNode, sizeBox.value)
                        }
                    }

                    Label {
                        text: qsTr("Last failures")
                        font.bold: true
                        visible: failures.count > 0
                    }
                    Repeater {
                        id: failures
                        objectName: "failures"
                        // Its own failures, and (a supervisor) the failures of children it restarted for.
                        model: (d.details.history || []).filter(e => e.stateText === "Failed"
                                || (e.stateText === "Restarting" && e.reason.startsWith("restarting after"))).slice(-3).reverse()
                        delegate: Label {
                            id: failure
                            required property var modelData
                            Layout.fillWidth: true
                            text: Qt.formatDateTime(new Date(failure.modelData.timestamp), "hh:mm:ss.zzz") + "  "
                                  + failure.modelData.reason
                            elide: Text.ElideRight
                            font.pixelSize: 11
                            color: "#7f1d1d"
                        }
                    }
                    Label {
                        text: qsTr("History")
                        font.bold: true
                    }
                    ListView {
                        id: historyList
                        objectName: "history"
                        Layout.fillWidth: true
                        Layout.fillHeight: true
                        clip: true
                        model: (d.details.history || []).slice().reverse()
                        delegate: Column {
                            id: entry
                            required property var modelData
                            width: ListView.view.width
                            Row {
                                spacing: 6
                                Text {
                                    text: Qt.formatDateTime(new Date(entry.modelData.timestamp), "hh:mm:ss.zzz")
                                    font.family: "monospace"
                                    font.pixelSize: 11
                                    color: "#6b7280"
                                }
                                Text {
                                    text: entry.modelData.stateText
                                    font.pixelSize: 11
                                    font.bold: entry.modelData.stateText === "Failed"
                                    color: entry.modelData.stateText === "Failed" ? "#b91c1c" : "#111827"
                                }
                            }
                            Text {
                                visible: entry.modelData.reason !== ""
                                width: parent.width
                                leftPadding: 12
                                text: entry.modelData.reason
                                wrapMode: Text.Wrap
                                maximumLineCount: 2
                                elide: Text.ElideRight
                                font.pixelSize: 11
                                color: "#4b5563"
                            }
                        }
                        ScrollBar.vertical: ScrollBar { }
                    }
                }

                Label {
                    anchors.centerIn: parent
                    visible: d.currentNode === null
                    text: qsTr("Select a node")
                    color: "#6b7280"
                }
            }
        }
    }
}
