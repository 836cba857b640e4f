import QtQuick
import StageDemo

// One number the work achieved, with its label.
Rectangle {
    id: tile
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
        Text { text: tile.label; color: Theme.muted; font.pixelSize: 12; width: parent.width; elide: Text.ElideRight }
        Text { text: tile.value; color: tile.valueColor; font.pixelSize: 22; font.bold: true }
        Text { text: tile.detail; color: Theme.muted; font.pixelSize: 11; width: parent.width; elide: Text.ElideRight }
    }
}
