package upgrade

import (
	"net"
	"os"
	"strconv"
	"strings"
)

// notify sends state to the service manager when NOTIFY_SOCKET names one
// (sd_notify(3)); it does nothing otherwise. An abstract socket is
// written with a leading "@".
func notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// NotifyMainPID tells the service manager that pid is now the main
// process of the service (systemd needs NotifyAccess=all to take it from
// a process that is not the main one).
func NotifyMainPID(pid int) error {
	return notify("MAINPID=" + strconv.Itoa(pid) + "\n")
}

// NotifyReady tells the service manager that the service is ready.
func NotifyReady() error {
	return notify("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid()) + "\n")
}
