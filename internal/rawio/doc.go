// Package rawio reads and writes sockets with system calls the Go
// scheduler is not told of: batches of UDP datagrams (recvmmsg and
// sendmmsg, with golang.org/x/net's ipv4.Message as the message type)
// and the bytes of a TCP connection.
//
// The sockets are non-blocking, so the calls never block; a socket that
// has nothing to read, or no room to write, is waited for through the
// runtime's poller as usual (syscall.RawConn), deadlines included. A
// system call the scheduler is told of wakes its monitor thread (sysmon)
// when the process was idle, and sysmon then sleeps and wakes a few more
// times before it parks again: at a low query rate that is about two
// thread wake-ups per query, more than the query's own work. Outside
// Linux the package hands out what the standard library and x/net do.
package rawio
