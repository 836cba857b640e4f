import QtQuick

// A node's state as a coloured badge with its name (Running, Restarting, Failed, …).
Rectangle {
    id: badge
    // The state's name (a node's stateText), shown and coloured.
    property string stateText: "Idle"

    // The colour of each state's name; an unknown name is grey.
    readonly property var colors: ({
        "Idle": "#8a8f98", "Starting": "#3f83c4", "Running": "#2e9d57", "Restarting": "#d99a1e",
        "Stopping": "#c46f2a", "Stopped": "#6b7280", "Failed": "#d13b3b"
    })

    implicitWidth: label.implicitWidth + 12
    implicitHeight: label.implicitHeight + 4
    radius: height / 2
    color: colors[stateText] !== undefined ? colors[stateText] : "#8a8f98"

    Text {
        id: label
        anchors.centerIn: parent
        text: badge.stateText
        color: "white"
        font.pixelSize: 11
        font.bold: true
    }
}
