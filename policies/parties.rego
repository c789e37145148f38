# R14 suspended parties, and the message's own addressing against the
# registry facts the gateway supplies.
# METADATA
# title: R14 suspended parties; R1 addressing against the registry facts
# custom:
#   rules:
#     R1: [deny]
#     R14: [deny]
package xborder.parties

import data.xborder.lib

deny contains {"rule": "R14", "message": "the sender is suspended and may not send"} if {
	input.sender.suspended == true
}

deny contains {"rule": "R14", "message": "the recipient is suspended and may not receive"} if {
	input.recipient.suspended == true
}

deny contains {"rule": "R1", "message": "message.from does not name the sending participant"} if {
	lib.msg.from != input.sender.id
}

deny contains {"rule": "R1", "message": "message.to does not name the receiving participant"} if {
	lib.msg.to != input.recipient.id
}

deny contains {"rule": "R1", "message": "message.from is missing"} if not lib.msg.from

deny contains {"rule": "R1", "message": "message.to is missing"} if not lib.msg.to
