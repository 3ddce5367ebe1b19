#include "saguaro/thread_affinity.hpp"

#include <pthread.h>
#include <sched.h>

#include <stdexcept>
#include <string>

namespace saguaro {

void pin_current_thread(const std::vector<int>& cores) {
  if (cores.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  std::string names;
  for (int c : cores) {
    if (c < 0 || c >= CPU_SETSIZE) throw std::invalid_argument("core " + std::to_string(c) + " is out of range");
    CPU_SET(c, &set);
    names += (names.empty() ? "" : ",") + std::to_string(c);
  }
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
    throw std::invalid_argument("cannot pin a worker to cores {" + names + "}: check they exist and are allowed");
}

}  // namespace saguaro

namespace saguaro {

void check_cores(const std::vector<int>& cores, const char* what) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;  // cannot tell: pinning will say
  for (int c : cores) {
    if (c >= 0 && c < CPU_SETSIZE && CPU_ISSET(c, &allowed)) continue;
    std::string names;
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &allowed)) names += (names.empty() ? "" : ", ") + std::to_string(i);
    throw std::invalid_argument(std::string(what) + " must list CPU cores this process may use [" + names + "], got " +
                                std::to_string(c));
  }
}

}  // namespace saguaro
