package coordinator

import (
	"container/heap"
	"sync"
	"time"
)

// timers delivers a tick for a gid at (or soon after) the earliest time it
// was armed for. Arming a later time while an earlier one is pending keeps
// the earlier one: a tick with nothing due is harmless (the machine re-arms),
// a lost tick is not.
type timers struct {
	mu    sync.Mutex
	h     timerHeap
	armed map[string]int64
	wake  chan struct{}
	fire  func(gid string)
	stopc chan struct{}
	done  chan struct{}
}

type timerItem struct {
	at  int64
	gid string
}

type timerHeap []timerItem

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerItem)) }
func (h *timerHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func newTimers(fire func(gid string)) *timers {
	t := &timers{armed: map[string]int64{}, wake: make(chan struct{}, 1), fire: fire, stopc: make(chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

func (t *timers) arm(gid string, at int64) {
	t.mu.Lock()
	if cur, ok := t.armed[gid]; ok && cur <= at {
		t.mu.Unlock()
		return
	}
	t.armed[gid] = at
	heap.Push(&t.h, timerItem{at: at, gid: gid})
	first := t.h[0].gid == gid && t.h[0].at == at
	t.mu.Unlock()
	if first {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

func (t *timers) disarm(gid string) {
	t.mu.Lock()
	delete(t.armed, gid)
	t.mu.Unlock()
}

func (t *timers) stop() {
	close(t.stopc)
	<-t.done
}

func (t *timers) loop() {
	defer close(t.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now().UnixNano()
		var due []string
		next := int64(-1)
		t.mu.Lock()
		for t.h.Len() > 0 {
			it := t.h[0]
			if cur, ok := t.armed[it.gid]; !ok || cur != it.at {
				heap.Pop(&t.h) // superseded or disarmed
				continue
			}
			if it.at > now {
				next = it.at
				break
			}
			heap.Pop(&t.h)
			delete(t.armed, it.gid)
			due = append(due, it.gid)
		}
		t.mu.Unlock()
		for _, gid := range due {
			go t.fire(gid)
		}
		d := time.Hour
		if next >= 0 {
			d = time.Duration(next - now)
		}
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-t.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-t.stopc:
			return
		}
	}
}
