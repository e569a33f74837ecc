"""Every SMTP reply Conduit sends, named once."""

OK_QUEUED = "250 2.0.0 Ok: queued as {message_id}"
OK_RECIPIENT = "250 2.1.5 Recipient ok"
OK_SENDER = "250 2.1.0 Sender ok"
UNKNOWN_RECIPIENT = "550 5.1.1 No such recipient here"
INACTIVE_RECIPIENT = "550 5.2.1 Mailbox disabled: this address is not accepting mail"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
NO_VALID_RECIPIENTS = "554 5.5.1 No valid recipients"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"
TOO_MANY_SESSIONS = "421 4.3.2 Too many connections, try again later"
AUTH_SUCCESS = "235 2.7.0 Authentication successful"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
INVALID_CHARACTERS = "501 5.5.4 Invalid characters: control characters and bytes that are not UTF-8 are refused"
BAD_HOSTNAME = "501 5.5.4 Invalid hostname: longer than 255 characters"
LINE_TOO_LONG = "500 5.5.2 Line too long"
MESSAGE_TOO_BIG = "552 5.3.4 Message too big for system"
TIMEOUT = "421 4.4.2 Timeout, closing connection"

# aiosmtpd's own replies to hostile input, reworded with RFC 3463 enhanced status codes.
AIOSMTPD_REWORDED = {
    "500 Command line too long": LINE_TOO_LONG,
    "500 Error: bad syntax": "500 5.5.2 Syntax error",
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
}
