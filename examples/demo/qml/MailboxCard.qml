import QtQuick
import QtQuick.Layouts
import Stage
import StageDemo

// One mailbox: its depth, its dead letters and the accounting of every message sent to it.
Card {
    id: card
    property Mailbox mailbox        // a stage::Mailbox<T> registered from C++
    property var account: ({})      // DemoController.accounts[i]
    readonly property int depth: mailbox ? mailbox.count : 0
    readonly property int deadLetters: mailbox ? mailbox.deadLetterCount : 0
    readonly property var reasons: mailbox ? mailbox.deadLetterReasons : []

    ColumnLayout {
        anchors.fill: parent
        spacing: 6

        RowLayout {
            spacing: 16
            Column {
                Text { text: "depth"; color: Theme.muted; font.pixelSize: 12 }
                Text { objectName: "depth"; text: card.depth; font.pixelSize: 22; font.bold: true; color: Theme.text }
            }
            Column {
                Text { text: "dead letters"; color: Theme.muted; font.pixelSize: 12 }
                Text {
                    objectName: "deadLetters"
                    text: card.deadLetters
                    font.pixelSize: 22; font.bold: true
                    color: card.deadLetters > 0 ? "#b5651d" : Theme.text
                }
            }
            Column {
                Layout.fillWidth: true
                Text { text: "lost"; color: Theme.muted; font.pixelSize: 12 }
                Text {
                    objectName: "lost"
                    text: card.account.lost === undefined ? "-" : card.account.lost
                    font.pixelSize: 22; font.bold: true
                    color: card.account.lost > 0 ? Theme.failed : Theme.running
                }
            }
        }
        Text {
            Layout.fillWidth: true
            text: "sent %1 · acknowledged %2 · redelivered %3 · dead-lettered %4 · queued %5 · held %6"
                .arg(card.account.sent || 0).arg(card.account.acknowledged || 0)
                .arg(card.account.redelivered || 0).arg(card.account.deadLettered || 0)
                .arg(card.account.queued || 0).arg(card.account.held || 0)
            color: Theme.text
            font.pixelSize: 12
            wrapMode: Text.WordWrap
        }
        Text {
            Layout.fillWidth: true
            Layout.fillHeight: true
            text: card.reasons.length > 0 ? "last dead letter: " + card.reasons[card.reasons.length - 1]
                                          : "no dead letters"
            color: card.reasons.length > 0 ? "#b5651d" : Theme.muted
            font.pixelSize: 12
            wrapMode: Text.WordWrap
            elide: Text.ElideRight
            maximumLineCount: 2
        }
    }
}
