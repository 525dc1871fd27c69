// go-peer - a second reference peer: what a team would write instead of
// nearchat in Go, on gorilla/websocket (Debian's
// golang-github-gorilla-websocket-dev, built offline from Debian's Go
// sources). It serves the same subset of nearchat's protocol as
// ws-peer.js, with the same frames:
//
//	POST /rooms {userId, latitude, longitude}   -> {roomId}
//	WebSocket /ws?userId=...
//	  {"action":"join-room","roomId"}           -> user-joined to the room, message-history to the joiner
//	  {"action":"send-message","roomId","message","messageId"}
//	                                            -> new-message to every member, ack to the sender
//
// Rooms live in memory; nothing is stored. Each socket has a writer
// goroutine fed by a buffered channel (gorilla allows one writer a
// connection), so a fan-out never waits for a socket.
//
//	go-peer [--port 8091]
package main

import (
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

const queueMax = 1024 // frames queued a socket before it is dropped as a slow reader

// A socket's queue: any goroutine sends, its writer drains; closed once,
// by whichever comes first of a full queue (a slow reader, dropped as
// nearchat drops one) and the socket's end.
type member struct {
	mu     sync.Mutex
	out    chan []byte
	closed bool
}

func (m *member) send(frame []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	select {
	case m.out <- frame:
	default:
		m.closed = true
		close(m.out)
	}
}

func (m *member) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.out)
	}
}

type room struct {
	mu      sync.Mutex
	members map[*member]struct{}
	seq     uint64
}

// The frames, as structs so that "type" comes first, as nearchat writes
// it (the load generator looks for it in a frame's first 64 bytes).
type errorFrame struct {
	Type   string `json:"type"`
	Action string `json:"action,omitempty"`
	Error  string `json:"error"`
}

type joinedFrame struct {
	Type   string `json:"type"`
	UserID string `json:"userId"`
	RoomID string `json:"roomId"`
}

type historyFrame struct {
	Type     string `json:"type"`
	RoomID   string `json:"roomId"`
	Messages []int  `json:"messages"`
}

type messageFrame struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	MessageID string `json:"messageId"`
	RoomID    string `json:"roomId"`
	Seq       uint64 `json:"seq"`
	Text      string `json:"text"`
	CreatedAt string `json:"createdAt"`
	UserID    string `json:"userId"`
}

type ackFrame struct {
	Type      string  `json:"type"`
	Action    string  `json:"action"`
	MessageID *string `json:"messageId"`
	Seq       uint64  `json:"seq"`
}

var (
	roomsMu  sync.RWMutex
	rooms    = map[string]*room{}
	upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
)

func uuid() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		log.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func answer(w http.ResponseWriter, status int, body interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func createRoom(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		answer(w, 405, map[string]string{"error": "method not allowed"})
		return
	}
	var input struct {
		UserID *string `json:"userId"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 65536)).Decode(&input); err != nil || input.UserID == nil {
		answer(w, 400, map[string]string{"error": "userId is required"})
		return
	}
	id := uuid()
	roomsMu.Lock()
	rooms[id] = &room{members: map[*member]struct{}{}}
	roomsMu.Unlock()
	answer(w, 200, map[string]string{"roomId": id})
}

func findRoom(id string) *room {
	roomsMu.RLock()
	defer roomsMu.RUnlock()
	return rooms[id]
}

func serveSocket(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		userID = "anonymous"
	}
	self := &member{out: make(chan []byte, queueMax)}
	done := make(chan struct{})
	go func() { // the writer: the one goroutine that writes this socket
		defer close(done)
		for frame := range self.out {
			if conn.WriteMessage(websocket.TextMessage, frame) != nil {
				break
			}
		}
		conn.Close()
	}()
	reply := func(frame interface{}) {
		text, _ := json.Marshal(frame)
		self.send(text)
	}
	var joined *room
	leave := func() {
		if joined != nil {
			joined.mu.Lock()
			delete(joined.members, self)
			joined.mu.Unlock()
		}
	}
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			break
		}
		var msg struct {
			Action    string  `json:"action"`
			RoomID    string  `json:"roomId"`
			Message   string  `json:"message"`
			MessageID *string `json:"messageId"`
		}
		if json.Unmarshal(data, &msg) != nil {
			reply(errorFrame{Type: "error", Error: "not JSON"})
			continue
		}
		rm := findRoom(msg.RoomID)
		switch msg.Action {
		case "join-room":
			if rm == nil {
				reply(errorFrame{"error", msg.Action, "no such room"})
				continue
			}
			leave()
			joined = rm
			event, _ := json.Marshal(joinedFrame{"user-joined", userID, msg.RoomID})
			rm.mu.Lock()
			rm.members[self] = struct{}{}
			for m := range rm.members {
				m.send(event)
			}
			rm.mu.Unlock()
			reply(historyFrame{"message-history", msg.RoomID, []int{}})
		case "send-message":
			if rm == nil || rm != joined {
				reply(errorFrame{"error", msg.Action, "not in the room"})
				continue
			}
			id := uuid()
			if msg.MessageID != nil {
				id = *msg.MessageID // as the gateway: the client's id
			}
			rm.mu.Lock()
			rm.seq++
			seq := rm.seq
			event, _ := json.Marshal(messageFrame{"new-message", id, id, msg.RoomID, seq, msg.Message,
				time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), userID})
			for m := range rm.members {
				m.send(event)
			}
			rm.mu.Unlock()
			reply(ackFrame{"ack", "send-message", msg.MessageID, seq})
		default:
			reply(errorFrame{"error", msg.Action, "unknown action"})
		}
	}
	leave()
	self.close()
	<-done
}

func main() {
	port := flag.Int("port", 8091, "TCP port on 127.0.0.1")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/rooms", createRoom)
	mux.HandleFunc("/create-room", createRoom)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/ws", serveSocket)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			serveSocket(w, r)
			return
		}
		answer(w, 404, map[string]string{"error": "not found"})
	})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; os.Exit(0) }()
	fmt.Fprintf(os.Stderr, "go-peer listening on 127.0.0.1:%d\n", *port)
	log.Fatal(http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *port), mux))
}
