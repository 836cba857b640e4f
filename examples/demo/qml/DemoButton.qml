import QtQuick
import StageDemo

// A flat button (the demo does not need QtQuick.Controls).
Rectangle {
    id: button
    property alias text: label.text
    property string hint
    property bool checked: false
    property int minimumWidth: 78
    property int padding: 24
    signal clicked()

    implicitWidth: Math.max(minimumWidth, label.implicitWidth + padding)
    implicitHeight: 30
    radius: 4
    opacity: enabled ? 1.0 : 0.4
    color: checked ? Theme.accent : (area.pressed ? "#dfe6f3" : (area.containsMouse ? "#eef2f9" : "#f7f8fa"))
    border.color: checked ? Theme.accent : Theme.border

    Text {
        id: label
        anchors.centerIn: parent
        color: button.checked ? "white" : Theme.text
        font.pixelSize: 13
    }
    MouseArea {
        id: area
        anchors.fill: parent
        hoverEnabled: true
        enabled: button.enabled
        onClicked: button.clicked()
    }
}
