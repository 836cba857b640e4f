import QtQuick
import StageDemo

// A titled white panel.
Rectangle {
    id: card
    property alias title: heading.text
    property string subtitle
    default property alias content: body.data

    color: Theme.card
    border.color: Theme.border
    radius: Theme.radius

    Text {
        id: heading
        x: 12; y: 8
        font.pixelSize: 15
        font.bold: true
        color: Theme.text
    }
    Text {
        anchors.left: heading.right; anchors.leftMargin: 8
        anchors.baseline: heading.baseline
        anchors.right: parent.right; anchors.rightMargin: 12
        text: card.subtitle
        color: Theme.muted
        font.pixelSize: 12
        elide: Text.ElideRight
    }
    Item {
        id: body
        anchors.fill: parent
        anchors.topMargin: heading.text.length > 0 ? 34 : 10
        anchors.leftMargin: 12; anchors.rightMargin: 12; anchors.bottomMargin: 10
    }
}
