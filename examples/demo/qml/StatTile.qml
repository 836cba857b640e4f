import QtQuick
import StageDemo

// One number the work achieved, with its label.
Rectangle {
    property string label
    property var value: 0
    property string detail
    property color valueColor: Theme.text

    implicitHeight: 70
    radius: Theme.radius
    color: "#f7f8fa"
    border.color: Theme.border

    Column {
        anchors.fill: parent; anchors.margins: 8
        spacing: 2
        Text { text: label; color: Theme.muted; font.pixelSize: 12; width: parent.width; elide: Text.ElideRight }
        Text { text: value; color: valueColor; font.pixelSize: 22; font.bold: true }
        Text { text: detail; color: Theme.muted; font.pixelSize: 11; width: parent.width; elide: Text.ElideRight }
    }
}
