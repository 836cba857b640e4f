import QtQuick
import QtQuick.Controls
import Stage

// A Button that asks the C++ adder actor (registered as "adder") and shows the answer.
ApplicationWindow {
    id: window
    width: 320
    height: 100
    visible: true
    title: "Stage: ask an actor from QML"

    property bool autoClick: false // --click: click once, exit with the outcome
    property int a: 1
    property int b: 2

    Row {
        anchors.centerIn: parent
        spacing: 12
        Button {
            id: button
            text: window.a + " + " + window.b
            onClicked: {
                const a = window.a, b = window.b
                Stage.ask("adder", "Add", {a: a, b: b}, 2000).then(sum => {
                    answer.text = "= " + sum
                    window.b += 1
                    if (window.autoClick) {
                        console.log("3: from QML, " + a + " + " + b + " = " + sum)
                        Qt.exit(sum === a + b ? 0 : 1)
                    }
                }, error => {
                    answer.text = error.name + ": " + error.message
                    if (window.autoClick)
                        Qt.exit(1)
                })
            }
        }
        Label {
            id: answer
            anchors.verticalCenter: parent.verticalCenter
            text: "?"
        }
    }

    Component.onCompleted: if (autoClick) button.clicked()
}
